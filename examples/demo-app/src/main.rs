//! The demo app as its own binary (`cutover demo-app` runs the same code).

fn main() -> std::process::ExitCode {
    cutover_demo_app::main_with(std::env::args().skip(1).collect())
}
