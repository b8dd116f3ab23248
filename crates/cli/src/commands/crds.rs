//! `cutover crds`: the CustomResourceDefinitions, for `kubectl apply -f -`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

/// Output formats of `cutover crds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Multi-document YAML.
    Yaml,
    /// A JSON `v1` List.
    Json,
}

pub fn run(format: Format) -> anyhow::Result<ExitCode> {
    let crds = cutover_core::crds::all();
    let text = match format {
        Format::Yaml => {
            let mut out = String::new();
            for crd in &crds {
                out.push_str("---\n");
                out.push_str(&serde_yaml_ng::to_string(crd).context("serializing a CRD")?);
            }
            out
        }
        Format::Json => {
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": crds});
            let mut text = serde_json::to_string_pretty(&list).context("serializing the CRDs")?;
            text.push('\n');
            text
        }
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}
