//! `webhook_deliveries.json`: each hook's last delivery result, written by the
//! gateway (at most once a second) for status, doctor and the dashboard.
//! A missing or corrupt file reads as "no deliveries yet".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::fsutil::{self, FsError};
use crate::home::ProfilePaths;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastDelivery {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The HTTP status the sender got.
    pub status: u16,
    /// `accepted`, `duplicate`, or the error code of the JSON answer.
    pub code: String,
}

impl LastDelivery {
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deliveries {
    pub hooks: BTreeMap<String, LastDelivery>,
}

pub fn read(paths: &ProfilePaths) -> Deliveries {
    fsutil::read_no_follow(&paths.deliveries())
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

pub fn write(paths: &ProfilePaths, deliveries: &Deliveries) -> Result<(), FsError> {
    let mut text = serde_json::to_vec_pretty(deliveries).expect("plain data serialises");
    text.push(b'\n');
    fsutil::atomic_write(&paths.deliveries(), &text, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::ProfileName;

    #[test]
    fn round_trips_and_a_bad_file_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let paths = ProfilePaths {
            name: ProfileName::default_profile(),
            dir: dir.path().to_path_buf(),
        };
        assert_eq!(read(&paths), Deliveries::default());
        let mut d = Deliveries::default();
        d.hooks.insert(
            "gh".into(),
            LastDelivery {
                at_ms: 5,
                status: 401,
                code: "bad_signature".into(),
            },
        );
        write(&paths, &d).unwrap();
        assert_eq!(read(&paths), d);
        assert!(!read(&paths).hooks["gh"].accepted());
        std::fs::write(paths.deliveries(), "{").unwrap();
        assert_eq!(read(&paths), Deliveries::default());
    }
}
