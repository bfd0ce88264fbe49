//! The points records of the durability log, kept in append-only segment
//! files beside RocksDB instead of in its `log` family.
//!
//! Records of points are written once and, an hour or so later, dropped
//! whole; nothing ever reads them but replay at open. In a RocksDB family
//! each record was copied into a memtable as well as the WAL, and at 40,000
//! series the log family's memtables were 60 of the 117 MiB of heap the
//! load bench peaked at (each point held twice: in the head's chunks and in
//! the memtable). A segment file costs one `write` per batch, as RocksDB's
//! WAL did, and no memory: the OS's page cache holds what is not yet on
//! disk. Delete records stay in the `log` family, committed with the blocks
//! they rewrite; replay merges both by sequence number.
//!
//! A segment is named by the sequence number its first record may have
//! (16 hex digits, `.journal`), so every record of a segment lies below the
//! name of the next one and a whole segment goes once that name is at or
//! below the oldest record still needed. A frame is
//! `len (u32 LE) ‖ seq (u64 LE) ‖ crc32 (u32 LE) of seq and record ‖ record`.
//!
//! Appends go to a segment created by the first append after open, after a
//! segment reached [`SEGMENT_BYTES`], or after a write failed and its torn
//! frame could not be cut off; so a torn frame (a crash or a full disk
//! mid-write) can only be the tail of a segment. Replay stops a segment at
//! its first frame that does not check, cuts the file there and says so: no
//! acknowledged record is lost that way, since a write is acknowledged
//! only once all of it returned.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

/// Size beyond which appends move to a new segment, so truncation frees
/// disk in steps of about this much.
const SEGMENT_BYTES: u64 = 64 << 20;

/// Size from which a segment holding records no longer needed moves
/// appends to a new one at truncation, so that it can go at the next.
const ROLL_AFTER_TRUNCATE: u64 = SEGMENT_BYTES / 16;

const HEADER: usize = 16;
const SUFFIX: &str = ".journal";

/// The segment files of one store, appended to by the writer.
pub(super) struct Journal {
    dir: PathBuf,
    /// First sequence numbers of the segments before `current`, oldest first.
    older: VecDeque<u64>,
    current: Option<Segment>,
    sync: bool,
    frame: Vec<u8>,
}

struct Segment {
    first: u64,
    file: File,
    len: u64,
}

/// What replay found in the segments.
pub(super) struct Replayed {
    pub records: u64,
    /// Bytes of torn or corrupt tails cut off.
    pub cut: u64,
}

impl Journal {
    /// Opens the journal in `dir` (created if missing) and hands every
    /// record, in sequence order, to `apply`. `sync` makes each append
    /// reach the disk before it returns.
    pub fn open(
        dir: &Path,
        sync: bool,
        mut apply: impl FnMut(u64, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(Journal, Replayed), StoreError> {
        let io = StoreError::Journal;
        std::fs::create_dir_all(dir).map_err(io)?;
        let older = segments(dir).map_err(io)?;
        let mut replayed = Replayed { records: 0, cut: 0 };
        let mut buf = Vec::new();
        let mut last_seq = None;
        for &first in &older {
            let path = segment_path(dir, first);
            buf.clear();
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io)?;
            file.read_to_end(&mut buf).map_err(io)?;
            let mut at = 0;
            while let Some((seq, record, next)) = frame_at(&buf, at) {
                if seq < first || last_seq.is_some_and(|last| seq <= last) {
                    break;
                }
                apply(seq, record)?;
                last_seq = Some(seq);
                replayed.records += 1;
                at = next;
            }
            if at < buf.len() {
                let cut = (buf.len() - at) as u64;
                tracing::warn!(
                    segment = %path.display(),
                    bytes = cut,
                    "journal segment ends in a torn or corrupt frame; cut off"
                );
                file.set_len(at as u64).map_err(io)?;
                replayed.cut += cut;
            }
        }
        let journal = Journal {
            dir: dir.to_owned(),
            older: older.into(),
            current: None,
            sync,
            frame: Vec::new(),
        };
        Ok((journal, replayed))
    }

    /// Appends record `seq`, which must be above every record appended
    /// before. On error the record may or may not be in the journal; the
    /// caller does not reuse `seq`.
    pub fn append(&mut self, seq: u64, record: &[u8]) -> io::Result<()> {
        let len = u32::try_from(record.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record over 4 GiB"))?;
        self.frame.clear();
        self.frame.extend_from_slice(&len.to_le_bytes());
        self.frame.extend_from_slice(&seq.to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&seq.to_le_bytes());
        crc.update(record);
        self.frame.extend_from_slice(&crc.finalize().to_le_bytes());
        self.frame.extend_from_slice(record);
        if self.current.is_none() {
            self.current = Some(self.create(seq)?);
        }
        let segment = self.current.as_mut().expect("created above");
        let written = segment.file.write_all(&self.frame).and_then(|()| {
            if self.sync {
                segment.file.sync_data()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => {
                segment.len += self.frame.len() as u64;
                if segment.len >= SEGMENT_BYTES {
                    self.roll();
                }
                Ok(())
            }
            Err(e) => {
                // Cut the torn frame, or leave it as this segment's tail
                // and go on in a new one.
                if segment.file.set_len(segment.len).is_err() {
                    self.roll();
                }
                Err(e)
            }
        }
    }

    /// Deletes every segment whose records all lie below `keep_from`;
    /// `next_seq` is the sequence number the next append will take.
    pub fn truncate(&mut self, keep_from: u64, next_seq: u64) -> io::Result<()> {
        // The segment appended to goes too once nothing of it is needed, or
        // will once it is rolled: without that, a slow stream would keep
        // hours of records until the segment filled up.
        let obsolete = |s: &Segment| {
            s.first < keep_from && (keep_from >= next_seq || s.len >= ROLL_AFTER_TRUNCATE)
        };
        if self.current.as_ref().is_some_and(obsolete) {
            self.roll();
        }
        while let Some(&first) = self.older.front() {
            let end = self
                .older
                .get(1)
                .copied()
                .or(self.current.as_ref().map(|s| s.first))
                .unwrap_or(next_seq);
            if end > keep_from {
                break;
            }
            std::fs::remove_file(segment_path(&self.dir, first))?;
            self.older.pop_front();
        }
        Ok(())
    }

    /// Segment files on disk.
    #[cfg(test)]
    pub fn segment_count(&self) -> usize {
        self.older.len() + usize::from(self.current.is_some())
    }

    fn roll(&mut self) {
        if let Some(segment) = self.current.take() {
            self.older.push_back(segment.first);
        }
    }

    fn create(&self, first: u64) -> io::Result<Segment> {
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(segment_path(&self.dir, first))?;
        if self.sync {
            // The new name must survive a power cut with the records in it.
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(Segment {
            first,
            file,
            len: 0,
        })
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:016x}{SUFFIX}"))
}

/// First sequence numbers of the segments in `dir`, in order. Other files
/// are left alone.
fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let parsed = name
            .to_str()
            .and_then(|n| n.strip_suffix(SUFFIX))
            .filter(|hex| hex.len() == 16)
            .and_then(|hex| u64::from_str_radix(hex, 16).ok());
        out.extend(parsed);
    }
    out.sort_unstable();
    Ok(out)
}

/// The frame at `at` of `buf`, if whole and intact: its sequence number,
/// record and the offset after it.
fn frame_at(buf: &[u8], at: usize) -> Option<(u64, &[u8], usize)> {
    let header = buf.get(at..at + HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let seq_bytes = &header[4..12];
    let crc = u32::from_le_bytes(header[12..16].try_into().ok()?);
    let record = buf.get(at + HEADER..at + HEADER + len)?;
    let mut check = crc32fast::Hasher::new();
    check.update(seq_bytes);
    check.update(record);
    (check.finalize() == crc).then(|| {
        let seq = u64::from_le_bytes(seq_bytes.try_into().expect("8 bytes"));
        (seq, record, at + HEADER + len)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reopen(dir: &Path) -> (Journal, Vec<(u64, Vec<u8>)>, u64) {
        let mut seen = Vec::new();
        let (journal, replayed) = Journal::open(dir, false, |seq, r| {
            seen.push((seq, r.to_vec()));
            Ok(())
        })
        .expect("opens");
        assert_eq!(replayed.records, seen.len() as u64);
        (journal, seen, replayed.cut)
    }

    fn record(seq: u64) -> Vec<u8> {
        (0..seq % 97).map(|i| (seq + i) as u8).collect()
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_opens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut j, seen, _) = reopen(dir.path());
        assert!(seen.is_empty());
        for seq in 0..10 {
            j.append(seq, &record(seq)).expect("appends");
        }
        drop(j);
        let (mut j, seen, cut) = reopen(dir.path());
        assert_eq!(cut, 0);
        assert_eq!(seen, (0..10).map(|s| (s, record(s))).collect::<Vec<_>>());
        // A second open appends to a segment of its own.
        for seq in 10..15 {
            j.append(seq, &record(seq)).expect("appends");
        }
        assert_eq!(j.segment_count(), 2);
        drop(j);
        let (_, seen, _) = reopen(dir.path());
        assert_eq!(seen, (0..15).map(|s| (s, record(s))).collect::<Vec<_>>());
    }

    #[test]
    fn a_torn_tail_is_cut_and_what_came_before_it_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut j, _, _) = reopen(dir.path());
        for seq in 0..4 {
            j.append(seq, &record(seq + 10)).expect("appends");
        }
        drop(j);
        let path = segment_path(dir.path(), 0);
        let full = std::fs::metadata(&path).expect("stats").len();
        // Half of the last frame, as a crash mid-write leaves it.
        let last = (HEADER + record(13).len()) as u64;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("opens")
            .set_len(full - last / 2)
            .expect("cuts");
        let (mut j, seen, cut) = reopen(dir.path());
        assert_eq!(
            seen,
            (0..3).map(|s| (s, record(s + 10))).collect::<Vec<_>>()
        );
        assert_eq!(cut, last - last / 2);
        assert_eq!(std::fs::metadata(&path).expect("stats").len(), full - last);
        j.append(4, b"after").expect("appends");
        drop(j);
        let (_, seen, cut) = reopen(dir.path());
        assert_eq!(cut, 0);
        assert_eq!(seen.last(), Some(&(4, b"after".to_vec())));
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn a_flipped_bit_ends_the_segment_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut j, _, _) = reopen(dir.path());
        for seq in 0..3 {
            j.append(seq, b"0123456789").expect("appends");
        }
        drop(j);
        let path = segment_path(dir.path(), 0);
        let mut bytes = std::fs::read(&path).expect("reads");
        bytes[HEADER + 10 + HEADER + 3] ^= 1;
        std::fs::write(&path, &bytes).expect("writes");
        let (_, seen, cut) = reopen(dir.path());
        assert_eq!(seen, vec![(0, b"0123456789".to_vec())]);
        assert_eq!(cut, 2 * (HEADER as u64 + 10));
    }

    #[test]
    fn truncation_deletes_only_segments_wholly_below_the_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut j, _, _) = reopen(dir.path());
        j.append(0, b"a").expect("appends");
        j.append(1, b"b").expect("appends");
        j.roll();
        j.append(2, b"c").expect("appends");
        j.roll();
        j.append(5, b"d").expect("appends");
        // Segment 0 holds 0 and 1, segment 2 holds 2, segment 5 is current.
        j.truncate(1, 6).expect("truncates");
        assert_eq!(j.segment_count(), 3, "record 1 is still needed");
        j.truncate(2, 6).expect("truncates");
        assert_eq!(j.segment_count(), 2);
        j.truncate(5, 6).expect("truncates");
        assert_eq!(j.segment_count(), 1, "the current segment stays");
        j.truncate(6, 6).expect("truncates");
        assert_eq!(j.segment_count(), 0, "nothing needed: all of it goes");
        j.append(6, b"e").expect("appends");
        drop(j);
        let (_, seen, _) = reopen(dir.path());
        assert_eq!(seen, vec![(6, b"e".to_vec())]);
    }

    #[test]
    fn a_big_enough_segment_with_obsolete_records_is_rolled_to_go_later() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut j, _, _) = reopen(dir.path());
        let record = vec![7u8; 1 << 20];
        for seq in 0..4 {
            j.append(seq, &record).expect("appends");
        }
        j.truncate(2, 4).expect("truncates");
        assert_eq!(j.segment_count(), 1, "records 2 and 3 are still needed");
        j.append(4, b"x").expect("appends");
        assert_eq!(j.segment_count(), 2, "appends went to a new segment");
        j.truncate(4, 5).expect("truncates");
        assert_eq!(
            j.segment_count(),
            1,
            "the old one went once all of it could"
        );
        drop(j);
        let (_, seen, _) = reopen(dir.path());
        assert_eq!(seen, vec![(4, b"x".to_vec())]);
    }

    #[test]
    fn a_frame_out_of_order_ends_replay_of_its_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut j, _, _) = reopen(dir.path());
        j.append(3, b"x").expect("appends");
        j.append(2, b"y").expect("appends");
        drop(j);
        let (_, seen, cut) = reopen(dir.path());
        assert_eq!(seen, vec![(3, b"x".to_vec())]);
        assert_eq!(cut, HEADER as u64 + 1);
    }
}
