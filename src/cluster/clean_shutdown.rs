//! The broker's clean-shutdown file (KIP-966), as Kafka's `CleanShutdownFileHandler` keeps
//! it: `.kafka_cleanshutdown` in the data directory, `{"version":0,"brokerEpoch":N}`,
//! written once every partition closed cleanly at the end of a shutdown, with the broker
//! epoch the process had. The next process takes it (reads and deletes it) before it
//! registers, and names that epoch as BrokerRegistration's `previous_broker_epoch`; the
//! controller counts a registration whose previous epoch matches the registered one as a
//! clean shutdown, so the broker's replicas stay in the ELRs. A crash leaves no file, and a
//! file the process took cannot vouch for the next crash.

use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::types::BrokerEpoch;

/// Kafka's file name (`CleanShutdownFileHandler.CLEAN_SHUTDOWN_FILE_NAME`).
pub const FILE_NAME: &str = ".kafka_cleanshutdown";
const VERSION: i32 = 0;

#[derive(Debug, Serialize, Deserialize)]
struct Content {
    version: i32,
    #[serde(rename = "brokerEpoch")]
    broker_epoch: i64,
}

/// Records that the process with `epoch` shut down cleanly: written to a temporary file,
/// synced, then renamed over the file, so a crash midway leaves none or a whole one.
pub fn write(dir: &Path, epoch: BrokerEpoch) -> std::io::Result<()> {
    let text = serde_json::to_string(&Content { version: VERSION, broker_epoch: epoch.0 }).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(FILE_NAME))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The epoch the previous process shut down cleanly with, if it did; the file is deleted
/// either way. An unreadable file counts as no clean shutdown, as in Kafka.
pub fn take(dir: &Path) -> Option<BrokerEpoch> {
    let path = dir.join(FILE_NAME);
    let text = std::fs::read_to_string(&path).ok();
    if text.is_some()
        && let Err(e) = std::fs::remove_file(&path)
    {
        tracing::warn!(error = %e, "cannot delete the clean-shutdown file: the next start may count a crash as clean");
    }
    let content: Content = match serde_json::from_str(&text?) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable clean-shutdown file: registering as after a crash");
            return None;
        }
    };
    (content.broker_epoch >= 0).then_some(BrokerEpoch(content.broker_epoch))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_written_epoch_is_taken_once_in_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(take(dir.path()), None, "no file: a crash, or a first start");
        write(dir.path(), BrokerEpoch(42)).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap(), r#"{"version":0,"brokerEpoch":42}"#);
        assert_eq!(take(dir.path()), Some(BrokerEpoch(42)));
        assert_eq!(take(dir.path()), None, "taken: the next crash is not clean");
    }

    #[test]
    fn a_damaged_file_is_no_clean_shutdown_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "{\"version\":0,").unwrap();
        assert_eq!(take(dir.path()), None);
        assert!(!dir.path().join(FILE_NAME).exists());
        std::fs::write(dir.path().join(FILE_NAME), r#"{"version":0,"brokerEpoch":-1}"#).unwrap();
        assert_eq!(take(dir.path()), None, "Kafka's -1: no epoch");
    }
}
