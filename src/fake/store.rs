//! What clients changed in a fake CRM, kept apart from the generated
//! people: written values, new last-modified times, custom property
//! definitions. With `--state FILE` it is saved (atomically, whenever it
//! changed) and loaded again at start, so a fake keeps its writes across
//! restarts.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Identifies which fake a state file belongs to; a file saved by another
/// kind, seed or size is refused rather than mixed in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateHeader {
    pub kind: String,
    pub seed: u64,
    pub records: u64,
}

/// Client changes over the generated records.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Overlay {
    /// Values written by clients, by record id.
    pub written: HashMap<u64, BTreeMap<String, String>>,
    /// Last-modified times that differ from the generated ones.
    pub modified: HashMap<u64, i64>,
    /// Milliseconds the write clock has moved past the fake's epoch.
    pub write_clock: i64,
    /// Custom property / field definitions clients created, by name.
    pub custom: BTreeMap<String, Value>,
    /// Company edits (the fake HubSpot): values and modified times.
    #[serde(default)]
    pub company_written: HashMap<u64, BTreeMap<String, String>>,
    #[serde(default)]
    pub company_modified: HashMap<u64, i64>,
    /// List membership edits (the fake HubSpot), by list id.
    #[serde(default)]
    pub list_edits: BTreeMap<u64, ListEdits>,
    /// Changed since the last save.
    #[serde(skip)]
    pub dirty: bool,
}

/// Membership changes of one list.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct ListEdits {
    pub members: BTreeMap<u64, bool>,
    pub added_ms: Option<i64>,
    pub removed_ms: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct StateFile<O> {
    header: StateHeader,
    overlay: O,
}

impl Overlay {
    /// The fake's "now" for a write to a record last modified at
    /// `previous`: the wall clock (writes in one millisecond share it, as
    /// in the real CRMs), but after the generated history and after the
    /// record's last change, so every write moves the record forward.
    pub fn next_write_time(&mut self, epoch_ms: i64, previous: i64) -> i64 {
        let wall = jiff::Timestamp::now().as_millisecond();
        let candidate = wall.max(epoch_ms + 1).max(previous + 1);
        self.write_clock = self.write_clock.max(candidate - epoch_ms);
        candidate
    }

    /// Stores written values and the record's new last-modified time.
    pub fn write(&mut self, id: u64, values: BTreeMap<String, String>, at: i64) {
        self.written.entry(id).or_default().extend(values);
        self.modified.insert(id, at);
        self.dirty = true;
    }

    /// Saves to `path` through a temporary file and a rename, so a crash
    /// leaves the old or the new state, never half of one.
    pub fn save(&mut self, header: &StateHeader, path: &Path) -> std::io::Result<()> {
        let file = StateFile {
            header: header.clone(),
            overlay: &*self,
        };
        let bytes = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)?;
        self.dirty = false;
        Ok(())
    }

    /// Saves only if something changed since the last save; true when it
    /// wrote the file.
    pub fn save_if_dirty(&mut self, header: &StateHeader, path: &Path) -> std::io::Result<bool> {
        if !self.dirty {
            return Ok(false);
        }
        self.save(header, path)?;
        Ok(true)
    }

    /// Loads a saved state; a missing file is an empty overlay.
    pub fn load(header: &StateHeader, path: &Path) -> Result<Self, String> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
            Err(error) => return Err(format!("{}: {error}", path.display())),
        };
        let file: StateFile<Self> = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: not a fake CRM state file: {e}", path.display()))?;
        if file.header != *header {
            return Err(format!(
                "{}: saved by a fake {} with seed {} and {} records, not this fake {} with seed {} and {} records",
                path.display(),
                file.header.kind,
                file.header.seed,
                file.header.records,
                header.kind,
                header.seed,
                header.records
            ));
        }
        Ok(file.overlay)
    }
}
