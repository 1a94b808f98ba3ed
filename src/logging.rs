//! Log levels that change at run time: Kafka's BROKER_LOGGER config resource.
//!
//! Kafka names its log4j loggers after classes; ours are the crate's module paths plus
//! `root`, the level of everything else. They are shown with dots (`blumfeld.group` for the
//! `tracing` target `blumfeld::group`) because Kafka's `kafka-configs` refuses `:` in a config
//! key; either spelling is accepted when setting a level. DescribeConfigs lists
//! each with the level in force (its own, else the root's); IncrementalAlterConfigs sets or
//! unsets one. The levels are turned into a `tracing` filter and handed to the installed
//! applier (`main` wires it to a `tracing_subscriber::reload` layer). Like Kafka's, the
//! changes are not persisted: a restart goes back to `RUST_LOG`.
//!
//! Invariant: `root` always has a level; module levels only exist for known modules.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The logger that stands for everything without a level of its own.
pub const ROOT_LOGGER: &str = "root";

/// The loggers that can be described and set: the crate and its top-level modules.
pub const LOGGERS: &[&str] = &[
    "blumfeld",
    "blumfeld::alloc",
    "blumfeld::api",
    "blumfeld::broker",
    "blumfeld::clock",
    "blumfeld::config",
    "blumfeld::group",
    "blumfeld::log",
    "blumfeld::logging",
    "blumfeld::metadata",
    "blumfeld::metrics",
    "blumfeld::partition",
    "blumfeld::record",
    "blumfeld::server",
    "blumfeld::types",
];

/// Kafka's log levels (`LogLevelConfig.VALID_LOG_LEVELS`), sorted as its messages list them.
pub const LEVELS: &[&str] = &["DEBUG", "ERROR", "FATAL", "INFO", "TRACE", "WARN"];

/// The name a logger is shown under: dots instead of `::`.
fn shown(target: &str) -> String {
    target.replace("::", ".")
}

/// The `tracing` target a logger name stands for (`blumfeld.group` → `blumfeld::group`).
fn target(name: &str) -> String {
    name.replace("::", ".").replace('.', "::")
}

/// Applies a filter directive string (`info,blumfeld::group=debug`).
pub type Applier = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

struct State {
    root: String,
    modules: BTreeMap<String, String>,
    /// Directives from `RUST_LOG` that are not a plain level for a known logger (other
    /// crates, span filters); kept as they are.
    other: Vec<String>,
    applier: Option<Applier>,
}

pub struct LogLevels {
    state: Mutex<State>,
}

/// The levels of this process.
pub fn levels() -> &'static LogLevels {
    static LEVELS_IN_FORCE: OnceLock<LogLevels> = OnceLock::new();
    LEVELS_IN_FORCE.get_or_init(|| LogLevels::new("info"))
}

/// Kafka's level name for a `tracing` directive level, if it is one.
fn kafka_level(directive_level: &str) -> Option<String> {
    let upper = directive_level.trim().to_ascii_uppercase();
    match upper.as_str() {
        "TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR" => Some(upper),
        _ => None,
    }
}

/// `tracing`'s name for a Kafka level (FATAL has no equivalent: ERROR is the nearest).
fn tracing_level(level: &str) -> &'static str {
    match level {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "WARN" => "warn",
        "ERROR" | "FATAL" => "error",
        _ => "info",
    }
}

impl LogLevels {
    /// Levels from a directive string such as `RUST_LOG`'s.
    pub fn new(directives: &str) -> Self {
        let mut state = State { root: "INFO".into(), modules: BTreeMap::new(), other: Vec::new(), applier: None };
        for d in directives.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            match d.split_once('=') {
                None => match kafka_level(d) {
                    Some(level) => state.root = level,
                    None => state.other.push(d.to_string()),
                },
                Some((target, level)) => match kafka_level(level) {
                    Some(level) if LOGGERS.contains(&target) => {
                        state.modules.insert(target.to_string(), level);
                    }
                    _ => state.other.push(d.to_string()),
                },
            }
        }
        Self { state: Mutex::new(state) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Takes the directives `RUST_LOG` gave and the function that applies new ones.
    pub fn install(&self, directives: &str, applier: Applier) {
        let fresh = Self::new(directives);
        let mut fresh = match fresh.state.into_inner() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        fresh.applier = Some(applier);
        *self.state() = fresh;
    }

    /// Every logger with the level in force, `root` first.
    pub fn describe(&self) -> Vec<(String, String)> {
        let s = self.state();
        let mut out = vec![(ROOT_LOGGER.to_string(), s.root.clone())];
        for name in LOGGERS {
            out.push((shown(name), self.resolve(&s, name)));
        }
        out
    }

    /// A module's own level, else its nearest ancestor's, else the root's.
    fn resolve(&self, s: &State, name: &str) -> String {
        let mut at = name;
        loop {
            if let Some(l) = s.modules.get(at) {
                return l.clone();
            }
            match at.rsplit_once("::") {
                Some((parent, _)) => at = parent,
                None => return s.root.clone(),
            }
        }
    }

    /// Checks one SET (`Some(level)`) or DELETE (`None`) as Kafka's `RuntimeLoggerManager`
    /// does; the error is (is it an invalid request rather than an invalid config, message).
    pub fn check(&self, logger: &str, level: Option<&str>) -> Result<(), (bool, String)> {
        if logger != ROOT_LOGGER && !LOGGERS.contains(&target(logger).as_str()) {
            return Err((false, format!("Logger {logger} does not exist!")));
        }
        match level {
            Some(l) if !LEVELS.contains(&l) => Err((
                false,
                format!(
                    "Cannot set the log level of {logger} to {l} as it is not a supported log level. Valid log levels are {}",
                    LEVELS.join(", ")
                ),
            )),
            None if logger == ROOT_LOGGER => {
                Err((true, format!("Removing the log level of the {ROOT_LOGGER} logger is not allowed")))
            }
            _ => Ok(()),
        }
    }

    /// Applies checked changes (see [`LogLevels::check`]) and hands the new filter on.
    pub fn apply(&self, changes: &[(String, Option<String>)]) -> Result<(), String> {
        let mut s = self.state();
        for (logger, level) in changes {
            match (logger.as_str(), level) {
                (ROOT_LOGGER, Some(l)) => s.root = l.clone(),
                (ROOT_LOGGER, None) => {}
                (m, Some(l)) => {
                    s.modules.insert(target(m), l.clone());
                }
                (m, None) => {
                    s.modules.remove(&target(m));
                }
            }
            tracing::warn!(logger = %logger, level = level.as_deref().unwrap_or("(unset)"), "log level changed");
        }
        let directives = render(&s);
        match &s.applier {
            Some(apply) => apply(&directives),
            None => Ok(()),
        }
    }
}

/// The filter for the levels: the root level, the untouched directives, then each module.
fn render(s: &State) -> String {
    let mut parts = vec![tracing_level(&s.root).to_string()];
    parts.extend(s.other.iter().cloned());
    parts.extend(s.modules.iter().map(|(m, l)| format!("{m}={}", tracing_level(l))));
    parts.join(",")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn levels_resolve_and_reach_the_applier() {
        let levels = LogLevels::new("");
        let seen = Arc::new(Mutex::new(String::new()));
        let sink = seen.clone();
        levels.install("warn,blumfeld::group=debug,hyper=off", Box::new(move |d| {
            *sink.lock().unwrap() = d.to_string();
            Ok(())
        }));
        let described: BTreeMap<String, String> = levels.describe().into_iter().collect();
        assert_eq!(described["root"], "WARN");
        assert_eq!(described["blumfeld.group"], "DEBUG");
        assert_eq!(described["blumfeld.api"], "WARN");
        assert!(levels.check("blumfeld::nope", Some("INFO")).is_err_and(|(req, _)| !req));
        assert!(levels.check("blumfeld::api", Some("LOUD")).is_err_and(|(_, m)| m.contains("DEBUG, ERROR, FATAL")));
        assert!(levels.check(ROOT_LOGGER, None).is_err_and(|(req, _)| req));
        levels.apply(&[("blumfeld".into(), Some("TRACE".into())), ("blumfeld.group".into(), None)]).unwrap();
        let described: BTreeMap<String, String> = levels.describe().into_iter().collect();
        assert_eq!(described["blumfeld.group"], "TRACE", "inherits from blumfeld");
        assert!(levels.check("blumfeld::group", Some("INFO")).is_ok(), "the tracing spelling works too");
        assert_eq!(*seen.lock().unwrap(), "warn,hyper=off,blumfeld=trace");
    }
}
