//! Bounded in-memory history with followers: the per-process output rings
//! behind `flowrun logs` and the event feed behind `flowrun events`.
//!
//! A [`Ring`] keeps the newest items up to a byte bound and numbers every
//! item it was ever given (`seq`). A reader holds only a cursor (the next
//! `seq` it wants), so readers cost the writer nothing: pushing never
//! waits for anybody, and a reader that fell behind by more than the ring
//! holds learns how many items it missed ([`Read::missed`]) and goes on
//! from the oldest item still kept. History and follow are the same
//! operation: history is a read from an old cursor.
//!
//! [`LogStore`] holds one ring per process and [`EventFeed`] one ring of
//! event lines; both can be pushed to from any thread and wake followers
//! through a `tokio::sync::watch` counter (one wake-up per push call, so a
//! writer pushes batches). A process's output lines are kept in a
//! `LineRing`: their bytes in one circular buffer, beside an index of
//! where each starts, so pushing a line is at most two copies and
//! evicting old ones only moves offsets. Each process's ring has its own
//! lock; the relay of a process holds a [`LogWriter`] to it and pushes a
//! whole read's lines under one lock ([`LogWriter::push_with`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Default bound of one process's output ring: 256 KiB as [`line_cost`]
/// counts it. Its text buffer never grows past the bound and its index
/// at most doubles, so a full ring takes at most twice the bound in
/// memory (docs/control.md, Log rings).
pub const DEFAULT_RING_BYTES: usize = 256 * 1024;

/// What a kept output line of `len` bytes counts against its ring's
/// bound: its bytes in the ring's text buffer and its entry in the line
/// index, twice (the index may hold as many spare entries as it has just
/// doubled), so a ring of empty lines is bounded too.
pub fn line_cost(len: usize) -> usize {
    len + 2 * size_of::<(f64, u64)>()
}

/// Default bound of the event feed: 1 MiB of event JSON.
pub const DEFAULT_EVENT_BYTES: usize = 1024 * 1024;

/// Newest items up to `max_bytes`; every item ever pushed has a `seq`.
#[derive(Debug)]
pub struct Ring<T> {
    items: VecDeque<(T, usize)>,
    /// `seq` of `items[0]`.
    first: u64,
    bytes: usize,
    max_bytes: usize,
}

/// The result of reading a ring from a cursor.
#[derive(Debug, PartialEq)]
pub struct Read<T> {
    /// Items that were pushed after the cursor but are no longer kept.
    pub missed: u64,
    /// `(seq, item)`, oldest first.
    pub items: Vec<(u64, T)>,
    /// The cursor to read from next time.
    pub next: u64,
}

impl<T: Clone> Ring<T> {
    /// A ring holding at most `max_bytes` (as counted by the `size` passed
    /// to [`Ring::push`]); the newest item is always kept, whatever its size.
    pub fn new(max_bytes: usize) -> Ring<T> {
        Ring {
            items: VecDeque::new(),
            first: 0,
            bytes: 0,
            max_bytes,
        }
    }

    /// The `seq` the next pushed item gets.
    pub fn end(&self) -> u64 {
        self.first + self.items.len() as u64
    }

    /// The `seq` of the oldest kept item (== `end()` when empty).
    pub fn start(&self) -> u64 {
        self.first
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes currently counted against the bound.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Append an item counted as `size` bytes; drop the oldest until the
    /// ring fits its bound again.
    pub fn push(&mut self, item: T, size: usize) {
        self.items.push_back((item, size));
        self.bytes += size;
        while self.bytes > self.max_bytes && self.items.len() > 1 {
            if let Some((_, s)) = self.items.pop_front() {
                self.bytes -= s;
                self.first += 1;
            }
        }
    }

    /// Up to `max` items from `cursor` on. A cursor older than the oldest
    /// kept item reports the gap as `missed`; a cursor past the end reads
    /// nothing and is moved back to the end.
    pub fn read(&self, cursor: u64, max: usize) -> Read<T> {
        let end = self.end();
        let from = cursor.clamp(self.first, end);
        let missed = from.saturating_sub(cursor);
        let skip = (from - self.first) as usize;
        let items: Vec<(u64, T)> = self
            .items
            .iter()
            .skip(skip)
            .take(max)
            .enumerate()
            .map(|(i, (t, _))| (from + i as u64, t.clone()))
            .collect();
        let next = from + items.len() as u64;
        Read {
            missed,
            items,
            next,
        }
    }

    /// The cursor from which the first item satisfying `keep` onward can be
    /// read, scanning back at most `tail` items from the end (all when
    /// `None`). Items are assumed to satisfy `keep` from some point on
    /// (e.g. "newer than T").
    pub fn cursor_for(&self, tail: Option<u64>, keep: impl Fn(&T) -> bool) -> u64 {
        let end = self.end();
        let mut c = match tail {
            Some(n) => end.saturating_sub(n).max(self.first),
            None => self.first,
        };
        while c < end && !keep(&self.items[(c - self.first) as usize].0) {
            c += 1;
        }
        c
    }
}

/// The memory an event of `len` bytes of JSON costs in the event feed:
/// its text and its ring slot, twice (as [`line_cost`]).
fn event_cost(len: usize) -> usize {
    len + 2 * size_of::<(String, usize)>()
}

/// The bytes of a [`LineRing`]'s lines, oldest first, in a circular
/// buffer of `cap` bytes: they start at `start` and may wrap around its
/// end. Appending is at most two copies; dropping the oldest bytes only
/// moves `start`. The buffer is allocated at its full size but filled (and
/// so faulted in) only as it is first written: `buf.len()` is how far it
/// ever was, and a new buffer is never zeroed.
#[derive(Debug, Default)]
struct ByteRing {
    buf: Vec<u8>,
    cap: usize,
    /// Index in `buf` of the oldest byte (0 when empty).
    start: usize,
    len: usize,
}

impl ByteRing {
    fn capacity(&self) -> usize {
        self.cap
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Index in `buf` of the byte `i` places after the oldest (`i` at
    /// most the capacity).
    #[inline]
    fn phys(&self, i: usize) -> usize {
        let p = self.start + i;
        if p >= self.cap {
            p - self.cap
        } else {
            p
        }
    }

    /// The `n` bytes from `from` places after the oldest on: the slice up
    /// to the end of the buffer, then the wrapped part (often empty).
    fn slices(&self, from: usize, n: usize) -> (&[u8], &[u8]) {
        debug_assert!(from + n <= self.len);
        if n == 0 {
            return (&[], &[]);
        }
        let p = self.phys(from);
        let head = n.min(self.cap - p);
        (&self.buf[p..p + head], &self.buf[..n - head])
    }

    /// Forget the oldest `n` bytes.
    fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        self.len -= n;
        self.start = if self.len == 0 { 0 } else { self.phys(n) };
    }

    /// Move the bytes to a new buffer of `cap` (at least `len`) bytes,
    /// unwrapped.
    fn resize(&mut self, cap: usize) {
        debug_assert!(cap >= self.len);
        let mut buf = Vec::with_capacity(cap);
        let (a, b) = self.slices(0, self.len);
        buf.extend_from_slice(a);
        buf.extend_from_slice(b);
        self.buf = buf;
        self.cap = cap;
        self.start = 0;
    }

    /// Write `data` at `at`, which is at most `buf.len()` (every byte
    /// before the end of the kept ones was written once), within `cap`.
    #[inline]
    fn write_at(&mut self, at: usize, data: &[u8]) {
        debug_assert!(at <= self.buf.len() && at + data.len() <= self.cap);
        let old = (self.buf.len() - at).min(data.len());
        self.buf[at..at + old].copy_from_slice(&data[..old]);
        if old < data.len() {
            self.buf.extend_from_slice(&data[old..]);
        }
    }

    /// Append `data`, for which the caller made room.
    #[inline]
    fn extend(&mut self, data: &[u8]) {
        debug_assert!(self.len + data.len() <= self.cap);
        if data.is_empty() {
            return;
        }
        let w = self.phys(self.len);
        let head = data.len().min(self.cap - w);
        self.write_at(w, &data[..head]);
        if head < data.len() {
            self.write_at(0, &data[head..]);
        }
        self.len += data.len();
    }
}

/// The smallest text buffer a ring allocates (unless its bound is
/// smaller), so a ring that starts filling does not reallocate per line.
const MIN_TEXT: usize = 256;

/// One process's output lines, stored compactly: their bytes back to
/// back in one circular buffer ([`ByteRing`]), each followed by its
/// newline (so the lines of a read, which lie back to back in it with
/// their newlines, go in with one copy: [`LinePusher::push_run`]), and an
/// index of (time, absolute end) per line. A push is at most two copies and no
/// allocation (but while the buffer doubles up to the bound); the oldest
/// lines are evicted, before the new line goes in, by dropping their index
/// entries and moving the buffer's start once, so the text never moves. Same
/// sequence numbers and bound as [`Ring`].
#[derive(Debug)]
struct LineRing {
    /// The kept lines' bytes, each with a newline after it; its oldest is
    /// byte `text_first` of all ever pushed.
    text: ByteRing,
    text_first: u64,
    /// (time, absolute end, after its newline) of each kept line (its
    /// start is the end of the one before, or `text_first`); `lines[0]` has `seq`
    /// `first`.
    lines: VecDeque<(f64, u64)>,
    first: u64,
    bytes: usize,
    max_bytes: usize,
}

impl LineRing {
    fn new(max_bytes: usize) -> LineRing {
        LineRing {
            text: ByteRing::default(),
            text_first: 0,
            lines: VecDeque::new(),
            first: 0,
            bytes: 0,
            max_bytes,
        }
    }

    fn end(&self) -> u64 {
        self.first + self.lines.len() as u64
    }

    fn text_end(&self) -> u64 {
        self.text_first + self.text.len() as u64
    }

    /// Byte range (absolute) of line `k` of the index.
    fn span(&self, k: usize) -> (u64, u64) {
        let start = match k {
            0 => self.text_first,
            _ => self.lines[k - 1].1,
        };
        let end = self.lines[k].1;
        (start, end)
    }

    #[inline]
    fn push(&mut self, t: f64, line: &[u8]) {
        let cost = line_cost(line.len());
        if self.bytes + cost > self.max_bytes {
            self.evict(cost);
        }
        self.make_room(line.len() + 1);
        self.text.extend(line);
        self.text.extend(b"\n");
        self.lines.push_back((t, self.text_end()));
        self.bytes += cost;
    }

    /// Append the lines of `run`, each with its newline, line `i` ending
    /// (after its newline) at `ends[i]`: the kept part copied in one go.
    /// The result is exactly that of pushing the lines one by one: the
    /// newest lines that fit the bound (at least the last one), with
    /// every line pushed counted in the sequence numbers.
    fn push_run(&mut self, t: f64, run: &[u8], ends: &[usize]) {
        let Some(&last) = ends.last() else { return };
        debug_assert_eq!(last, run.len());
        let mut total = 0;
        let mut prev = 0;
        for &e in ends {
            total += line_cost(e - prev - 1);
            prev = e;
        }
        let (mut skip, mut from) = (0, 0);
        if total > self.max_bytes {
            // The run alone is past the bound: nothing older stays, and
            // only its newest lines that fit (at least one) are kept; the
            // others count as pushed and evicted.
            self.evict(total);
            while skip + 1 < ends.len() && total > self.max_bytes {
                total -= line_cost(ends[skip] - from - 1);
                from = ends[skip];
                skip += 1;
            }
            self.first += skip as u64;
        } else if self.bytes + total > self.max_bytes {
            self.evict(total);
        }
        self.make_room(run.len() - from);
        let base = self.text_end();
        self.text.extend(&run[from..]);
        self.lines
            .extend(ends[skip..].iter().map(|&e| (t, base + (e - from) as u64)));
        self.bytes += total;
    }

    /// Make the text buffer hold `more` bytes more: grow it, or shrink it
    /// back after a line larger than the bound is gone.
    #[inline]
    fn make_room(&mut self, more: usize) {
        let need = self.text.len() + more;
        if need > self.text.capacity() {
            self.text.resize(self.grown(need));
        } else if self.text.capacity() > self.max_bytes && self.text.capacity() > need {
            // The buffer grew past the bound for a line larger than it;
            // that line is gone: back to the bound (or this line).
            self.text.resize(self.max_bytes.max(need));
        }
    }

    /// The text buffer's next capacity, for `need` bytes: double, but
    /// not much past what a full ring of lines as long as the ones so far
    /// holds (the bound less their index share: with lines of 60 bytes,
    /// two thirds of it), and by a quarter at least (lines that grow
    /// longer); never past the bound (or this line, when it alone is
    /// larger).
    fn grown(&self, need: usize) -> usize {
        let cap = self.text.capacity();
        let avg = need / (self.lines.len() + 1);
        let full = (self.max_bytes / line_cost(avg) + 1).saturating_mul(avg.max(1));
        (cap.saturating_mul(2))
            .min(full.saturating_add(full / 8))
            .max(cap + cap / 4)
            .max(need)
            .max(MIN_TEXT)
            .min(self.max_bytes.max(need))
    }

    /// Drop the oldest lines, as few as needed for `cost` more bytes to
    /// fit the bound, or all of them: their index entries one by one (a
    /// line usually makes room for one), their text at once by moving the
    /// buffer's start.
    fn evict(&mut self, cost: usize) {
        let (mut k, mut text) = (0, 0);
        while self.bytes + cost > self.max_bytes {
            let Some((_, end)) = self.lines.pop_front() else {
                break;
            };
            // The line and its newline.
            let len = (end - self.text_first) as usize - text;
            text += len;
            self.bytes -= line_cost(len - 1);
            k += 1;
        }
        self.text.consume(text);
        self.text_first += text as u64;
        self.first += k;
    }

    fn line(&self, k: usize) -> LogLine {
        let (a, b) = self.span(k);
        // Without its newline.
        let (a, b) = (
            (a - self.text_first) as usize,
            (b - self.text_first) as usize - 1,
        );
        let (head, wrapped) = self.text.slices(a, b - a);
        let mut bytes = Vec::with_capacity(b - a);
        bytes.extend_from_slice(head);
        bytes.extend_from_slice(wrapped);
        LogLine {
            t: self.lines[k].0,
            text: match String::from_utf8(bytes) {
                Ok(s) => s,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            },
        }
    }

    /// As [`Ring::read`].
    fn read(&self, cursor: u64, max: usize) -> Read<LogLine> {
        let end = self.end();
        let from = cursor.clamp(self.first, end);
        let missed = from.saturating_sub(cursor);
        let skip = (from - self.first) as usize;
        let n = (self.lines.len() - skip).min(max);
        let items: Vec<(u64, LogLine)> = (0..n)
            .map(|i| (from + i as u64, self.line(skip + i)))
            .collect();
        Read {
            missed,
            items,
            next: from + n as u64,
        }
    }

    /// As [`Ring::cursor_for`], keeping lines not older than `since`.
    fn cursor_for(&self, tail: Option<u64>, since: Option<f64>) -> u64 {
        let end = self.end();
        let mut c = match tail {
            Some(n) => end.saturating_sub(n).max(self.first),
            None => self.first,
        };
        while c < end && since.is_some_and(|s| self.lines[(c - self.first) as usize].0 < s) {
            c += 1;
        }
        c
    }
}

/// `group.index`, ordered by group name then index.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcKey {
    pub group: String,
    pub index: u32,
}

impl std::fmt::Display for ProcKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.group, self.index)
    }
}

/// One relayed output line.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    /// Seconds since the Unix epoch.
    pub t: f64,
    pub text: String,
}

/// Seconds since the Unix epoch, as a float (log line and event times).
pub fn epoch_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Which processes a log reader follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Select {
    /// Every process, including ones added later.
    All,
    /// These groups (every index, including ones added later) and these
    /// single processes.
    Some {
        groups: Vec<String>,
        processes: Vec<ProcKey>,
    },
}

impl Select {
    fn matches(&self, k: &ProcKey) -> bool {
        match self {
            Select::All => true,
            Select::Some { groups, processes } => {
                groups.contains(&k.group) || processes.contains(k)
            }
        }
    }
}

/// What a log reader gets: lines and gaps, in ring order per process.
#[derive(Clone, Debug, PartialEq)]
pub enum LogItem {
    Line {
        process: ProcKey,
        seq: u64,
        line: LogLine,
    },
    Missed {
        process: ProcKey,
        count: u64,
    },
}

/// A log reader's position in every ring it follows.
#[derive(Clone, Debug)]
pub struct LogCursor {
    select: Select,
    positions: BTreeMap<ProcKey, u64>,
    /// Where each ring ended when the reading began, for a reading that
    /// ends there ([`LogStore::cursor_to_now`]); `None`: a follower's.
    until: Option<BTreeMap<ProcKey, u64>>,
}

/// One process's ring, shared between the store's map and the relay that
/// writes it (a [`LogWriter`]).
type SharedRing = Arc<Mutex<LineRing>>;

fn lock_ring(ring: &SharedRing) -> MutexGuard<'_, LineRing> {
    // A panic while holding the lock leaves consistent data (every
    // mutation is a whole push); keep serving it.
    ring.lock().unwrap_or_else(|e| e.into_inner())
}

/// One output ring per process, shared by the relay (writer) and the
/// control server (readers). Each ring has its own lock, so the relays of
/// different processes never wait for each other; a reader takes the
/// map's lock, then the rings' one at a time.
#[derive(Debug)]
pub struct LogStore {
    rings: Mutex<BTreeMap<ProcKey, SharedRing>>,
    max_bytes: usize,
    tick: watch::Sender<u64>,
}

impl LogStore {
    /// A store whose rings hold `max_bytes` each ([`DEFAULT_RING_BYTES`]).
    pub fn new(max_bytes: usize) -> LogStore {
        LogStore {
            rings: Mutex::new(BTreeMap::new()),
            max_bytes,
            tick: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<ProcKey, SharedRing>> {
        // As `lock_ring`: only whole insertions.
        self.rings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ring of `process`, made (empty) if it is not known yet.
    fn ring(&self, process: &ProcKey) -> SharedRing {
        let mut rings = self.lock();
        if let Some(r) = rings.get(process) {
            return r.clone();
        }
        let r = Arc::new(Mutex::new(LineRing::new(self.max_bytes)));
        rings.insert(process.clone(), r.clone());
        r
    }

    /// Make a process known (an empty ring) so that readers can select it
    /// before it prints anything.
    pub fn register(&self, process: ProcKey) {
        let max = self.max_bytes;
        self.lock()
            .entry(process)
            .or_insert_with(|| Arc::new(Mutex::new(LineRing::new(max))));
    }

    /// Every known process.
    pub fn processes(&self) -> Vec<ProcKey> {
        self.lock().keys().cloned().collect()
    }

    /// Append lines of one process (timestamped now) and wake followers
    /// once (if there was a line).
    pub fn push<I, S>(&self, process: &ProcKey, lines: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let ring = self.ring(process);
        push_with(self, &ring, |p| {
            for s in lines {
                p.push(s.as_ref());
            }
        });
    }

    /// The writing end of the ring of `process` (made if not known yet),
    /// for a relay: pushing through it takes only that ring's lock.
    pub fn writer(self: &Arc<Self>, process: &ProcKey) -> LogWriter {
        LogWriter {
            ring: self.ring(process),
            store: self.clone(),
        }
    }

    /// A receiver that changes after every push (for followers).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tick.subscribe()
    }

    /// A cursor over the selected processes: the last `tail` lines of each
    /// (all kept lines when `None`) that are not older than `since` seconds
    /// since the epoch.
    pub fn cursor(&self, select: Select, tail: Option<u64>, since: Option<f64>) -> LogCursor {
        self.make_cursor(select, tail, since, false)
    }

    /// [`LogStore::cursor`], ending at the lines the rings hold now: a
    /// reading without `-f` is the history at the request, not also what
    /// the relays (on their own thread) push while it is sent.
    pub fn cursor_to_now(
        &self,
        select: Select,
        tail: Option<u64>,
        since: Option<f64>,
    ) -> LogCursor {
        self.make_cursor(select, tail, since, true)
    }

    fn make_cursor(
        &self,
        select: Select,
        tail: Option<u64>,
        since: Option<f64>,
        to_now: bool,
    ) -> LogCursor {
        let rings = self.lock();
        let mut positions = BTreeMap::new();
        let mut until = to_now.then(BTreeMap::new);
        for (k, r) in rings.iter().filter(|(k, _)| select.matches(k)) {
            let r = lock_ring(r);
            positions.insert(k.clone(), r.cursor_for(tail, since));
            if let Some(u) = until.as_mut() {
                u.insert(k.clone(), r.end());
            }
        }
        LogCursor {
            select,
            positions,
            until,
        }
    }

    /// Up to `max` items from the cursor on, advancing it: each process's
    /// gap (if it fell behind) then its lines. Processes that appeared
    /// since the cursor was made are read from their oldest kept line.
    pub fn read(&self, cursor: &mut LogCursor, max: usize) -> Vec<LogItem> {
        let rings = self.lock();
        for k in rings.keys() {
            if cursor.until.is_none()
                && cursor.select.matches(k)
                && !cursor.positions.contains_key(k)
            {
                // New since the cursor was made: every line it ever had
                // came after, so lines already evicted are a gap.
                cursor.positions.insert(k.clone(), 0);
            }
        }
        let mut out = Vec::new();
        for (k, pos) in cursor.positions.iter_mut() {
            if out.len() >= max {
                break;
            }
            let Some(ring) = rings.get(k) else { continue };
            let until = cursor.until.as_ref().and_then(|u| u.get(k)).copied();
            if until.is_some_and(|u| *pos >= u) {
                continue;
            }
            let want = match until {
                Some(u) => (max - out.len()).min((u - *pos) as usize),
                None => max - out.len(),
            };
            let mut r = lock_ring(ring).read(*pos, want);
            if let Some(u) = until {
                // Lines evicted since: the read began after `pos`, maybe
                // past `u`; only those before `u` were missed.
                r.items.retain(|(seq, _)| *seq < u);
                r.next = r.next.min(u);
                r.missed = r.missed.min(u - *pos);
            }
            if r.missed > 0 {
                out.push(LogItem::Missed {
                    process: k.clone(),
                    count: r.missed,
                });
            }
            out.extend(r.items.into_iter().map(|(seq, line)| LogItem::Line {
                process: k.clone(),
                seq,
                line,
            }));
            *pos = r.next;
        }
        out
    }

    /// Lines counted against the bound of each process (tests, benches).
    pub fn bytes(&self, process: &ProcKey) -> Option<usize> {
        self.lock().get(process).map(|r| lock_ring(r).bytes)
    }
}

/// Lines pushed to one ring under one lock, all timestamped alike.
pub struct LinePusher<'a> {
    ring: &'a mut LineRing,
    t: f64,
    pushed: bool,
}

impl LinePusher<'_> {
    /// Append one line (without its newline).
    #[inline]
    pub fn push(&mut self, line: &[u8]) {
        self.ring.push(self.t, line);
        self.pushed = true;
    }

    /// Append the lines of `run`, each followed by its newline in it, line
    /// `i` ending (after its newline) at `ends[i]`, the last at the end of
    /// `run`: one copy for them all.
    pub fn push_run(&mut self, run: &[u8], ends: &[usize]) {
        if !ends.is_empty() {
            self.ring.push_run(self.t, run, ends);
            self.pushed = true;
        }
    }
}

/// Lock `ring` once, let `fill` push lines (timestamped now), then wake
/// the followers of `store` once if it pushed any.
fn push_with<R>(
    store: &LogStore,
    ring: &SharedRing,
    fill: impl FnOnce(&mut LinePusher<'_>) -> R,
) -> R {
    let t = epoch_secs();
    let (r, pushed) = {
        let mut ring = lock_ring(ring);
        let mut p = LinePusher {
            ring: &mut ring,
            t,
            pushed: false,
        };
        let r = fill(&mut p);
        (r, p.pushed)
    };
    if pushed {
        store.tick.send_modify(|n| *n = n.wrapping_add(1));
    }
    r
}

/// The writing end of one process's ring ([`LogStore::writer`]).
#[derive(Clone, Debug)]
pub struct LogWriter {
    store: Arc<LogStore>,
    ring: SharedRing,
}

impl LogWriter {
    /// Lock the ring once and let `fill` push lines (timestamped now);
    /// then wake the followers once if it pushed any. `fill` must not use
    /// the store (its lock is not held, this ring's is).
    pub fn push_with<R>(&self, fill: impl FnOnce(&mut LinePusher<'_>) -> R) -> R {
        push_with(&self.store, &self.ring, fill)
    }
}

/// The lifecycle events as JSON lines, bounded, with followers.
#[derive(Debug)]
pub struct EventFeed {
    ring: Mutex<Ring<String>>,
    tick: watch::Sender<u64>,
}

impl EventFeed {
    pub fn new(max_bytes: usize) -> EventFeed {
        EventFeed {
            ring: Mutex::new(Ring::new(max_bytes)),
            tick: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring<String>> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Append event lines (each one JSON object, docs/events.md) and wake
    /// followers once.
    pub fn push<I: IntoIterator<Item = String>>(&self, events: I) {
        {
            let mut ring = self.lock();
            for mut e in events {
                // Kept for the feed's whole bound (1 MiB): no spare capacity.
                e.shrink_to_fit();
                let size = event_cost(e.len());
                ring.push(e, size);
            }
        }
        self.tick.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tick.subscribe()
    }

    /// The cursor of the oldest kept event.
    pub fn start(&self) -> u64 {
        self.lock().start()
    }

    pub fn read(&self, cursor: u64, max: usize) -> Read<String> {
        self.lock().read(cursor, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(g: &str, i: u32) -> ProcKey {
        ProcKey {
            group: g.into(),
            index: i,
        }
    }

    fn texts(items: &[LogItem]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                LogItem::Line { process, line, .. } => format!("{process} {}", line.text),
                LogItem::Missed { process, count } => format!("{process} missed {count}"),
            })
            .collect()
    }

    #[test]
    fn ring_keeps_the_newest_within_its_bound() {
        let mut r = Ring::new(30);
        for i in 0..10u32 {
            r.push(i, 10);
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.bytes(), 30);
        assert_eq!((r.start(), r.end()), (7, 10));
        let read = r.read(0, 100);
        assert_eq!(read.missed, 7);
        assert_eq!(read.items, vec![(7, 7), (8, 8), (9, 9)]);
        assert_eq!(read.next, 10);
        // Up to date: nothing, nothing missed.
        let again = r.read(10, 100);
        assert_eq!((again.missed, again.items.len(), again.next), (0, 0, 10));
    }

    #[test]
    fn an_item_larger_than_the_bound_is_kept_alone() {
        let mut r = Ring::new(10);
        r.push("a", 4);
        r.push("big", 100);
        assert_eq!(r.len(), 1);
        assert_eq!(r.read(0, 10).items, vec![(1, "big")]);
        r.push("c", 4);
        assert_eq!(r.read(1, 10).items, vec![(2, "c")]);
        assert_eq!(r.read(1, 10).missed, 1);
    }

    #[test]
    fn reads_are_bounded_and_resume() {
        let mut r = Ring::new(1000);
        for i in 0..10u32 {
            r.push(i, 1);
        }
        let a = r.read(0, 4);
        assert_eq!(a.items.len(), 4);
        let b = r.read(a.next, 100);
        assert_eq!(b.items.first(), Some(&(4, 4)));
        assert_eq!(b.next, 10);
        // A cursor from the future is brought back to the end.
        assert_eq!(r.read(99, 10).next, 10);
    }

    #[test]
    fn tail_and_since_choose_the_start() {
        let mut r = Ring::new(1000);
        for i in 0..10u32 {
            r.push(i, 1);
        }
        assert_eq!(r.cursor_for(Some(3), |_| true), 7);
        assert_eq!(r.cursor_for(Some(30), |_| true), 0);
        assert_eq!(r.cursor_for(None, |&x| x >= 5), 5);
        assert_eq!(r.cursor_for(Some(3), |&x| x >= 8), 8);
        assert_eq!(r.cursor_for(Some(0), |_| true), 10);
    }

    #[test]
    fn a_reading_to_now_ends_at_the_lines_held_when_it_began() {
        let s = LogStore::new(DEFAULT_RING_BYTES);
        s.push(&key("api", 0), ["a1", "a2", "a3"]);
        let mut c = s.cursor_to_now(Select::All, Some(2), None);
        // Written while the reading is under way: not part of it.
        s.push(&key("api", 0), ["a4"]);
        s.push(&key("api", 1), ["new process"]);
        assert_eq!(texts(&s.read(&mut c, 1)), ["api.0 a2"]);
        s.push(&key("api", 0), ["a5"]);
        assert_eq!(texts(&s.read(&mut c, 100)), ["api.0 a3"]);
        assert!(s.read(&mut c, 100).is_empty());
        // Lines it had not read yet are evicted by newer ones meanwhile:
        // it says what it missed and ends, without the newer lines.
        let small = LogStore::new(4 * line_cost(2));
        small.push(&key("api", 0), ["b1", "b2"]);
        let mut c = small.cursor_to_now(Select::All, None, None);
        let newer: Vec<String> = (0..20).map(|i| format!("n{i}")).collect();
        small.push(&key("api", 0), newer.iter().map(String::as_str));
        assert_eq!(texts(&small.read(&mut c, 100)), ["api.0 missed 2"]);
        assert!(small.read(&mut c, 100).is_empty());
    }

    #[test]
    fn store_history_then_follow() {
        let s = LogStore::new(DEFAULT_RING_BYTES);
        s.push(&key("api", 0), ["a1", "a2"]);
        s.push(&key("web", 0), ["w1"]);
        let mut c = s.cursor(Select::All, Some(1), None);
        assert_eq!(texts(&s.read(&mut c, 100)), ["api.0 a2", "web.0 w1"]);
        assert!(s.read(&mut c, 100).is_empty());
        s.push(&key("api", 0), ["a3"]);
        s.push(&key("api", 1), ["new process"]);
        assert_eq!(
            texts(&s.read(&mut c, 100)),
            ["api.0 a3", "api.1 new process"]
        );
    }

    #[test]
    fn selection_by_group_and_process() {
        let s = LogStore::new(DEFAULT_RING_BYTES);
        for (g, i) in [("api", 0), ("api", 1), ("web", 0), ("web", 1)] {
            s.push(&key(g, i), [format!("{g}{i}")]);
        }
        let sel = Select::Some {
            groups: vec!["api".into()],
            processes: vec![key("web", 1)],
        };
        let mut c = s.cursor(sel, None, None);
        assert_eq!(
            texts(&s.read(&mut c, 100)),
            ["api.0 api0", "api.1 api1", "web.1 web1"]
        );
    }

    #[test]
    fn a_slow_reader_gets_a_gap_a_fast_one_loses_nothing() {
        let s = LogStore::new(10 * line_cost(4));
        let p = key("api", 0);
        let mut fast = s.cursor(Select::All, None, None);
        let mut slow = s.cursor(Select::All, None, None);
        let mut got = Vec::new();
        for n in 0..1000 {
            s.push(&p, [format!("{n:04}")]);
            for item in s.read(&mut fast, 100) {
                if let LogItem::Line { line, .. } = item {
                    got.push(line.text);
                } else {
                    panic!("fast reader missed lines");
                }
            }
        }
        assert_eq!(got.len(), 1000);
        assert!(got.iter().enumerate().all(|(i, t)| *t == format!("{i:04}")));
        let items = s.read(&mut slow, 100);
        assert_eq!(
            items[0],
            LogItem::Missed {
                process: p.clone(),
                count: 990
            }
        );
        assert_eq!(items.len(), 11);
        // The writer's memory stayed bounded.
        assert!(s.bytes(&p).unwrap() <= 10 * line_cost(4));
    }

    #[test]
    fn since_filters_by_time() {
        let s = LogStore::new(DEFAULT_RING_BYTES);
        s.push(&key("api", 0), ["old"]);
        let cut = epoch_secs() + 3600.0;
        let mut c = s.cursor(Select::All, None, Some(cut));
        assert!(s.read(&mut c, 10).is_empty());
        let mut c = s.cursor(Select::All, None, Some(0.0));
        assert_eq!(s.read(&mut c, 10).len(), 1);
    }

    #[test]
    fn followers_are_woken_once_per_push() {
        let s = LogStore::new(DEFAULT_RING_BYTES);
        let mut rx = s.subscribe();
        assert!(!rx.has_changed().unwrap());
        s.push(&key("api", 0), ["a", "b", "c"]);
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        assert!(!rx.has_changed().unwrap());
    }

    #[test]
    fn a_line_ring_keeps_whole_lines_within_its_bound() {
        let mut r = LineRing::new(5 * line_cost(10));
        for i in 0..100u32 {
            let line = format!("{i:0>10}");
            r.push(f64::from(i), line.as_bytes());
            assert!(r.bytes <= 5 * line_cost(10));
            assert!(
                r.text.capacity() <= 5 * line_cost(10) + 10,
                "the buffer stays bounded"
            );
        }
        let got = r.read(0, 100);
        assert_eq!(got.missed, 95);
        let texts: Vec<&str> = got.items.iter().map(|(_, l)| l.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "0000000095",
                "0000000096",
                "0000000097",
                "0000000098",
                "0000000099"
            ]
        );
        assert_eq!(got.items[0].0, 95);
        assert_eq!(r.cursor_for(Some(2), None), 98);
        assert_eq!(r.cursor_for(None, Some(97.0)), 97);
        // Not UTF-8, and empty: kept as written, shown lossily.
        r.push(1.0, b"\xff\xfeok");
        r.push(1.0, b"");
        let tail = r.read(r.cursor_for(Some(2), None), 10);
        let texts: Vec<&str> = tail.items.iter().map(|(_, l)| l.text.as_str()).collect();
        assert_eq!(texts, ["\u{fffd}\u{fffd}ok", ""]);
    }

    fn line_texts(r: &LineRing, cursor: u64) -> Vec<String> {
        r.read(cursor, usize::MAX)
            .items
            .into_iter()
            .map(|(_, l)| l.text)
            .collect()
    }

    #[test]
    fn a_byte_ring_wraps_and_unwraps() {
        let mut b = ByteRing::default();
        b.resize(8);
        b.extend(b"abcdef");
        b.consume(4);
        b.extend(b"ghijk");
        // "efghijk": "ef" and "gh" at the end of the buffer, "ijk" wrapped.
        assert_eq!((b.start, b.len()), (4, 7));
        assert_eq!(b.slices(0, 7), (&b"efgh"[..], &b"ijk"[..]));
        assert_eq!(b.slices(3, 3), (&b"h"[..], &b"ij"[..]));
        assert_eq!(b.slices(5, 2), (&b"jk"[..], &b""[..]));
        b.resize(16);
        assert_eq!((b.start, b.capacity()), (0, 16));
        assert_eq!(b.slices(0, 7), (&b"efghijk"[..], &b""[..]));
        b.consume(7);
        assert_eq!((b.start, b.len()), (0, 0));
    }

    #[test]
    fn lines_straddling_the_buffer_end_read_whole() {
        // Lines of 10 bytes cost 42: 6 fit a bound of 260, whose buffer
        // stops growing at 256 bytes, so the text soon wraps.
        let mut r = LineRing::new(260);
        let mut straddled = 0;
        for i in 0..200u32 {
            r.push(f64::from(i), format!("{i:0>10}").as_bytes());
            assert!(r.text.capacity() <= 256);
            let (a, b) = r.span(r.lines.len() - 1);
            let from = (a - r.text_first) as usize;
            if !r.text.slices(from, (b - a) as usize).1.is_empty() {
                straddled += 1;
            }
            let want: Vec<String> = (i.saturating_sub(5)..=i)
                .map(|j| format!("{j:0>10}"))
                .collect();
            assert_eq!(line_texts(&r, 0), want);
        }
        assert!(straddled > 3, "lines did straddle the end: {straddled}");
    }

    #[test]
    fn growth_while_wrapped_and_many_evictions_in_one_push() {
        let mut r = LineRing::new(1000);
        for i in 0..105u32 {
            r.push(f64::from(i), format!("{i:0>10}").as_bytes());
        }
        // 23 lines costing 42: 253 bytes of text (each line and its
        // newline) in a buffer of 256, from byte 902 of all pushed (134
        // of the buffer) on: wrapped.
        assert_eq!(r.lines.len(), 23);
        assert_eq!(r.text.capacity(), 256);
        assert!(r.text.start + r.text.len() > 256, "wrapped");
        // A 600-byte line evicts 15 lines at once and grows the buffer.
        let big = vec![b'x'; 600];
        r.push(105.0, &big);
        assert_eq!(r.text.capacity(), 8 * 11 + 601);
        assert_eq!((r.first, r.end()), (97, 106));
        assert_eq!(r.bytes, 8 * line_cost(10) + line_cost(600));
        let mut want: Vec<String> = (97..105u32).map(|j| format!("{j:0>10}")).collect();
        want.push("x".repeat(600));
        assert_eq!(line_texts(&r, 0), want);
        assert_eq!(r.read(0, 100).missed, 97);
        // Filling up again wraps the grown buffer, still within the bound.
        for i in 106..300u32 {
            r.push(f64::from(i), format!("{i:0>10}").as_bytes());
            assert!(r.text.capacity() <= 1000);
        }
        let want: Vec<String> = (277..300u32).map(|j| format!("{j:0>10}")).collect();
        assert_eq!(line_texts(&r, 0), want);
    }

    #[test]
    fn a_line_larger_than_the_bound_is_kept_alone_then_the_buffer_shrinks() {
        let mut r = LineRing::new(100);
        r.push(0.0, b"small");
        let big = vec![b'y'; 300];
        r.push(1.0, &big);
        assert_eq!((r.first, r.end()), (1, 2));
        assert_eq!(line_texts(&r, 0), ["y".repeat(300)]);
        assert_eq!(r.text.capacity(), 301, "the line and its newline");
        r.push(2.0, b"after");
        assert_eq!(line_texts(&r, 0), ["after"]);
        assert_eq!(r.read(0, 10).missed, 2);
        assert_eq!(r.text.capacity(), 100, "back within the bound");
    }

    #[test]
    fn a_full_ring_of_short_lines_takes_little_more_than_their_text() {
        let mut r = LineRing::new(DEFAULT_RING_BYTES);
        for i in 0..10_000u32 {
            r.push(0.0, format!("{i:0>60}").as_bytes());
        }
        // About two thirds of the bound is text: the buffer is not the
        // whole bound.
        let (text, cap) = (r.text.len(), r.text.capacity());
        assert!(cap <= text + text / 4, "{cap} bytes for {text} of text");
        // Longer lines: it grows, still within the bound.
        for i in 0..2_000u32 {
            r.push(0.0, format!("{i:0>600}").as_bytes());
            assert!(r.text.capacity() <= DEFAULT_RING_BYTES);
        }
        assert!(r.text.len() > cap);
        assert_eq!(line_texts(&r, r.end() - 1), [format!("{:0>600}", 1999)]);
    }

    /// The ring's contract, spelled out the simplest way.
    struct Model {
        lines: VecDeque<(f64, Vec<u8>)>,
        first: u64,
        bytes: usize,
        max: usize,
    }

    impl Model {
        fn push(&mut self, t: f64, line: &[u8]) {
            self.lines.push_back((t, line.to_vec()));
            self.bytes += line_cost(line.len());
            while self.bytes > self.max && self.lines.len() > 1 {
                let (_, l) = self.lines.pop_front().unwrap();
                self.bytes -= line_cost(l.len());
                self.first += 1;
            }
        }

        fn end(&self) -> u64 {
            self.first + self.lines.len() as u64
        }

        fn read(&self, cursor: u64, max: usize) -> Read<LogLine> {
            let from = cursor.clamp(self.first, self.end());
            let items: Vec<(u64, LogLine)> = self
                .lines
                .iter()
                .enumerate()
                .skip((from - self.first) as usize)
                .take(max)
                .map(|(i, (t, l))| {
                    let text = String::from_utf8_lossy(l).into_owned();
                    (self.first + i as u64, LogLine { t: *t, text })
                })
                .collect();
            Read {
                missed: from - cursor.min(from),
                next: from + items.len() as u64,
                items,
            }
        }

        fn cursor_for(&self, tail: Option<u64>, since: Option<f64>) -> u64 {
            let end = self.end();
            let from = tail.map_or(self.first, |n| end.saturating_sub(n).max(self.first));
            (from..end)
                .find(|&c| since.is_none_or(|s| self.lines[(c - self.first) as usize].0 >= s))
                .unwrap_or(end)
        }
    }

    /// xorshift64*: a fixed-seed generator, enough for test inputs.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
        }
    }

    #[test]
    fn a_line_ring_behaves_as_its_model() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..300 {
            let max = rng.below(600) as usize;
            let mut r = LineRing::new(max);
            let mut m = Model {
                lines: VecDeque::new(),
                first: 0,
                bytes: 0,
                max,
            };
            let mut t = 0.0;
            for step in 0..400 {
                // Mostly short lines, now and then one near or past the
                // bound; some not UTF-8.
                let len = match rng.below(20) {
                    0 => rng.below(2 * max as u64 + 2),
                    1 => 0,
                    _ => rng.below(40),
                } as usize;
                let line: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
                t += rng.below(3) as f64;
                if rng.below(3) == 0 {
                    // A run: this line and up to five more (shorter, so
                    // that several may fit), back to back with newlines.
                    let mut lines = vec![line];
                    for _ in 0..rng.below(6) {
                        let len = rng.below(max as u64 / 3 + 2) as usize;
                        lines.push((0..len).map(|_| rng.below(256) as u8).collect());
                    }
                    let (mut run, mut ends) = (Vec::new(), Vec::new());
                    for l in &lines {
                        run.extend_from_slice(l);
                        run.push(b'\n');
                        ends.push(run.len());
                        m.push(t, l);
                    }
                    r.push_run(t, &run, &ends);
                } else {
                    r.push(t, &line);
                    m.push(t, &line);
                }
                let ctx = format!("round {round} step {step} bound {max}");
                assert_eq!(
                    (r.first, r.end(), r.bytes),
                    (m.first, m.end(), m.bytes),
                    "{ctx}"
                );
                assert!(
                    r.text.capacity() <= max.max(r.text.len()),
                    "{ctx}: buffer {} past the bound",
                    r.text.capacity()
                );
                let cursor = rng.below(m.end() + 4);
                let n = rng.below(12) as usize;
                assert_eq!(r.read(cursor, n), m.read(cursor, n), "{ctx}");
                let tail = (rng.below(3) > 0).then(|| rng.below(m.end() + 3));
                let since = (rng.below(2) > 0).then(|| rng.below(t as u64 + 3) as f64);
                assert_eq!(
                    r.cursor_for(tail, since),
                    m.cursor_for(tail, since),
                    "{ctx}"
                );
            }
        }
    }

    #[test]
    fn event_feed_reports_gaps() {
        let f = EventFeed::new(3 * event_cost(2));
        f.push((0..5).map(|i| format!("e{i}")));
        let r = f.read(0, 10);
        assert_eq!(r.missed, 2);
        assert_eq!(r.items.len(), 3);
        assert_eq!(f.start(), 2);
    }
}
