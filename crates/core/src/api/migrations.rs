//! `spec.migrations` and `status.migration`: a Rollout's database migrations (expand → backfill
//! before the new revision starts, contract once the old one is gone and a bake period passed).
//! See docs/migrations.md.

use std::fmt;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DurationString, SecretKeyRef};

/// Default of `spec.migrations.bake`: 14 days, as the seed advises.
pub const DEFAULT_MIGRATION_BAKE: Duration = Duration::from_secs(336 * 3600);

/// `spec.migrations`: where the rollout's migration files are, which database they change,
/// and when contract runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutMigrations {
    /// Where the migration files are: `dir` on one host, `configMapRef` on Kubernetes.
    pub source: MigrationSource,
    /// Where the database URL comes from: `env` on one host, `secretKeyRef` on Kubernetes.
    pub database_url_from: DatabaseUrlSource,
    /// How long after the verified switch contract waits (Go duration). Defaults to 336h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake: Option<DurationString>,
    /// `manual` (an operator runs `cutover migrate contract`) or `auto`. Defaults to manual.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<ContractMode>,
}

impl RolloutMigrations {
    /// The bake period; an unparsable value (refused by `cutover lint`) counts as the default.
    pub fn bake(&self) -> Duration {
        self.bake
            .as_ref()
            .and_then(|b| b.parse().ok())
            .unwrap_or(DEFAULT_MIGRATION_BAKE)
    }

    /// The contract mode.
    pub fn contract_mode(&self) -> ContractMode {
        self.contract.unwrap_or_default()
    }
}

/// `spec.migrations.source`: exactly one of the two.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MigrationSource {
    /// A directory of migration files (single host): relative to the manifest's directory, or
    /// absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// A ConfigMap whose keys are the migration files (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<LocalObjectRef>,
}

/// `spec.migrations.databaseUrlFrom`: exactly one of the two.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseUrlSource {
    /// An environment variable of the daemon holding `postgres://…` or `sqlite:PATH` (single
    /// host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// A key of a Secret in the rollout's namespace (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

/// A named object in the rollout's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalObjectRef {
    /// Its name.
    pub name: String,
}

/// Who runs contract once it is due.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContractMode {
    /// cutover reports it due; an operator runs `cutover migrate contract`.
    #[default]
    Manual,
    /// cutover runs it when due.
    Auto,
}

/// Where a migration stands: the `phase` column of `cutover_migrations`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MigrationPhase {
    /// Not started.
    Pending,
    /// Expand applied: both versions work.
    Expanded,
    /// Data copied: the new version can take all traffic.
    Backfilled,
    /// Old shape dropped: no way back.
    Contracted,
    /// Expand undone.
    RolledBack,
}

impl MigrationPhase {
    /// The name stored in `cutover_migrations`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Expanded => "expanded",
            Self::Backfilled => "backfilled",
            Self::Contracted => "contracted",
            Self::RolledBack => "rolled_back",
        }
    }

    /// Expand (and maybe backfill) has yet to run before a new revision may take traffic.
    pub fn needs_work(self) -> bool {
        matches!(self, Self::Pending | Self::Expanded | Self::RolledBack)
    }

    /// Expanded or backfilled: what rollback can still undo.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Expanded | Self::Backfilled)
    }
}

impl fmt::Display for MigrationPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `status.migration`: the migration the rollout is busy with or waits on, shown by
/// `cutover get rollout`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationStatus {
    /// Migration name (its file name without extension).
    pub name: String,
    /// Its phase.
    pub phase: MigrationPhase,
    /// When contract is due: the verified switch plus the bake period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract_due_at: Option<Time>,
    /// What is running, what failed, or what contract waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
