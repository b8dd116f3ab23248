//! Analysis evaluation, pure: conditions ([`condition`]), the translation of Argo Rollouts'
//! expression syntax ([`expr`]), argument resolution ([`args`]) and the measurement state
//! machine of one AnalysisRun ([`machine`]). Providers and timers live in `cutover-analysis`.

pub mod args;
pub mod condition;
pub mod expr;
pub mod machine;

pub use args::{ArgContext, ArgsError, flatten_templates, resolve_run};
pub use condition::{Condition, ConditionError, ResultValue, Verdict, judge};
pub use machine::{Arrival, Measured, MetricError, RunMachine, RunMetric, Step};
