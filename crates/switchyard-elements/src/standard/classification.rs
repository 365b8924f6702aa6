//! The decision-program engine behind Classifier, IPClassifier and IPFilter
//! (Click's `elements/standard/classification.*`).
//!
//! Front ends turn their pattern text into [`Expr`]s: boolean formulas over
//! word [`Test`]s (`offset/value%mask` on 32 bits, as Click's insns). Rules
//! are ordered; a packet takes the action of the first rule it matches.
//! [`Program::compile`] turns the rules into a decision DAG once, at
//! configuration time, and [`Program::run`] walks it per packet.
//!
//! The compiler does what Click's combining and dominator passes do, more
//! directly: it expands the rules as a whole, one test at a time, carrying
//! what each branch has learned into every rule still pending (a test whose
//! outcome is known is never made again, and a rule that can no longer
//! match is gone). When it tests a word it gathers every value any pending
//! rule compares that word against (same offset and mask) and dispatches on
//! all of them in one step: a small table scanned in order, or a hash table
//! when larger. Rules that share a test therefore share the step, and a
//! hundred rules on distinct source networks cost one lookup, not a hundred
//! comparisons. Identical sub-programs are shared (hash-consing), so the
//! result is a DAG. The expansion has a budget, charged with all the work
//! it does (every rule a step looks at, those it skips at a glance too), so
//! that compile time is bounded whatever the rules; a rule set that would
//! blow up is compiled in chunks of rules, and past that rule by rule,
//! which is Click's linear program.
//!
//! Bytes beyond the packet: a test whose bytes are absent takes its
//! "short" outcome (false for a plain test) instead of reading them, as
//! Click's `short_output`. A step checks the one length it needs against
//! the window of its address space, computed once per packet.

use super::scatter::Scatter;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::rc::Rc;
use switchyard_core::{Batch, Context, Packet};

/// The address space a test's offset counts from. Classifier reads the
/// packet data; IPClassifier and IPFilter read the IP header and the
/// transport header that follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Space {
    Data = 0,
    Net = 1,
    Transp = 2,
}

/// One comparison: the 32-bit big-endian word at `off` (a multiple of
/// four) in `space`, ANDed with `mask`, equals `value`. The test needs the
/// first `end` bytes of its space; when the packet has fewer, the test
/// yields `short` without reading anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Test {
    pub space: Space,
    pub off: u32,
    pub mask: u32,
    pub value: u32,
    pub end: u32,
    pub short: bool,
}

impl Test {
    /// A test on the word at `off`, aligned down to a multiple of four;
    /// `value` is masked. `end` is at least one byte into the word.
    pub fn new(space: Space, off: u32, mask: u32, value: u32, end: u32) -> Test {
        let off = off & !3;
        Test {
            space,
            off,
            mask,
            value: value & mask,
            end: end.clamp(off + 1, off + 4),
            short: false,
        }
    }

    /// This test's outcome on a packet.
    #[cfg(test)]
    pub fn eval(&self, data: &[u8], win: &Windows) -> bool {
        let sp = self.space as usize;
        if self.end as usize > win.avail[sp] {
            return self.short;
        }
        load(data, win.start[sp] + self.off as usize) & self.mask == self.value
    }

    fn key(&self) -> Key {
        Key {
            space: self.space,
            off: self.off,
            mask: self.mask,
            end: self.end,
        }
    }
}

/// A rule's condition: tests combined with not, and, or.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    True,
    False,
    Test(Test),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Expr {
    /// Plain negation: true wherever `self` is false, short packets
    /// included (Click's `!` and `not`).
    pub fn negate(self) -> Expr {
        Expr::Not(Box::new(self))
    }

    /// Negation of a relation on packet fields: true where the fields are
    /// present and `self` is false, false where they are absent (Click's
    /// negation with flipped short outputs, which gives `!=`, `<` and the
    /// like).
    pub fn negate_present(self) -> Expr {
        Expr::Not(Box::new(self.flip_short()))
    }

    fn flip_short(self) -> Expr {
        match self {
            Expr::Test(mut t) => {
                t.short = !t.short;
                Expr::Test(t)
            }
            Expr::Not(e) => Expr::Not(Box::new(e.flip_short())),
            Expr::And(v) => Expr::And(v.into_iter().map(Expr::flip_short).collect()),
            Expr::Or(v) => Expr::Or(v.into_iter().map(Expr::flip_short).collect()),
            e => e,
        }
    }

    /// Evaluates the formula directly, test by test: the reference that
    /// compiled programs are checked against.
    #[cfg(test)]
    pub fn eval(&self, data: &[u8], win: &Windows) -> bool {
        match self {
            Expr::True => true,
            Expr::False => false,
            Expr::Test(t) => t.eval(data, win),
            Expr::Not(e) => !e.eval(data, win),
            Expr::And(v) => v.iter().all(|e| e.eval(data, win)),
            Expr::Or(v) => v.iter().any(|e| e.eval(data, win)),
        }
    }
}

/// Where each address space starts in the packet data and how many bytes
/// of it are present. An absent space has `avail` 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Windows {
    pub start: [usize; 4],
    pub avail: [usize; 4],
}

impl Windows {
    /// Only the data space, the whole packet.
    pub fn data(len: usize) -> Windows {
        Windows {
            start: [0; 4],
            avail: [len, 0, 0, 0],
        }
    }
}

/// The first-match reference: the action of the first rule whose
/// condition holds, evaluated naively (`None` is drop).
#[cfg(test)]
pub fn first_match(rules: &[(Expr, Option<u32>)], data: &[u8], win: &Windows) -> Option<u32> {
    rules.iter().find(|(e, _)| e.eval(data, win)).and_then(|(_, a)| *a)
}

/// The big-endian word at `at`, bytes past the data reading as zero (a
/// test never looks at them: its mask stops at its `end`).
#[inline(always)]
fn load(data: &[u8], at: usize) -> u32 {
    match data.get(at..at + 4) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => {
            let mut w = [0u8; 4];
            for (i, x) in w.iter_mut().enumerate() {
                *x = data.get(at + i).copied().unwrap_or(0);
            }
            u32::from_be_bytes(w)
        }
    }
}

/// A jump: a step index below `LEAF`, else an output (`LEAF | n`) or drop.
const LEAF: u32 = 1 << 31;
/// The action code of a dropped packet.
pub const DROP: u32 = u32::MAX;
/// Marks a free slot of a hash table (no output has that number).
const EMPTY: u32 = u32::MAX - 1;
/// Output numbers a program can name: `0..MAX_OUTPUTS`.
pub const MAX_OUTPUTS: u32 = 1 << 24;

fn leaf(action: Option<u32>) -> u32 {
    match action {
        Some(o) if o < MAX_OUTPUTS => LEAF | o,
        _ => DROP,
    }
}

/// Tables up to this size are scanned; larger ones are hashed.
const LINEAR_MAX: usize = 8;
/// Longest run of occupied hash slots accepted (bounds a miss's probes).
const MAX_CLUSTER: usize = 6;
/// How many times a hash table may double past half full to break up its
/// runs; values that still cluster get a sorted table instead.
const MAX_GROWTH: u32 = 3;
const HASH_MUL: u32 = 0x9E37_79B1;

/// The kind of program. `Data` (Classifier) reads the packet data and
/// prints data offsets. `Ip` (IPClassifier, IPFilter) reads the IP and
/// transport headers, prints Click's IPFilter offsets (IP header at 256,
/// transport header at 512), and relies on the IP header window being
/// either empty or a whole 20-byte header, as [`ip_pattern::windows`]
/// makes it: a short IP header then means no IP header at all.
///
/// [`ip_pattern::windows`]: crate::ip::ip_pattern::windows
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    Data,
    Ip,
}

impl Listing {
    /// Per space, the fewest bytes a present window has.
    fn floors(self) -> [u32; 4] {
        match self {
            Listing::Data => [0; 4],
            Listing::Ip => [0, 20, 0, 0],
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Step {
    space: u8,
    /// 0: one value; 1: a table scanned in order; 2: a hash table; 3: a
    /// sorted table, searched by halves.
    kind: u8,
    /// Hash tables: 32 minus the index bits.
    shift: u8,
    off: u32,
    end: u32,
    mask: u32,
    /// The value of a one-value step.
    value: u32,
    /// Where a one-value step goes on a match.
    yes: u32,
    /// Where the step goes when no value matches.
    no: u32,
    /// Where the step goes when its bytes are absent.
    short: u32,
    /// Table slots: `table[start..start + len]`.
    start: u32,
    len: u32,
}

/// A compiled classification program.
#[derive(Clone, Debug)]
pub struct Program {
    steps: Vec<Step>,
    table: Vec<(u32, u32)>,
    root: u32,
    listing: Listing,
}

impl Program {
    /// Compiles ordered rules: a packet takes the action of the first rule
    /// it matches (`Some(output)`, or `None` to drop), and is dropped when
    /// it matches none.
    pub fn compile(rules: &[(Expr, Option<u32>)], listing: Listing) -> Program {
        let mut c = Compiler::new();
        c.floors = listing.floors();
        let roots: Vec<(NodeId, u32)> = rules.iter().map(|(e, a)| (c.intern_expr(e, false), leaf(*a))).collect();
        let root = c.compile_rules(&roots);
        c.finish(root, listing)
    }

    /// The output for a packet (`None`: drop). `win` says where the
    /// address spaces lie in `data`.
    #[inline]
    pub fn run(&self, data: &[u8], win: &Windows) -> Option<usize> {
        match self.run_code(data, win) {
            DROP => None,
            o => Some(o as usize),
        }
    }

    /// [`run`](Self::run) as a code: the output number, or [`DROP`].
    #[inline]
    pub fn run_code(&self, data: &[u8], win: &Windows) -> u32 {
        let mut j = self.root;
        while j < LEAF {
            j = self.step(j, data, win);
        }
        if j == DROP {
            DROP
        } else {
            j & !LEAF
        }
    }

    #[inline(always)]
    fn step(&self, j: u32, data: &[u8], win: &Windows) -> u32 {
        let s = &self.steps[j as usize];
        let sp = (s.space & 3) as usize;
        if s.end as usize > win.avail[sp] {
            return s.short;
        }
        let w = load(data, win.start[sp] + s.off as usize) & s.mask;
        match s.kind {
            0 => {
                if w == s.value {
                    s.yes
                } else {
                    s.no
                }
            }
            1 => {
                let slots = &self.table[s.start as usize..(s.start + s.len) as usize];
                slots.iter().find(|e| e.0 == w).map_or(s.no, |e| e.1)
            }
            2 => {
                let slots = &self.table[s.start as usize..(s.start + s.len) as usize];
                let wrap = slots.len() - 1;
                let mut i = (w.wrapping_mul(HASH_MUL) >> s.shift) as usize & wrap;
                loop {
                    let (k, t) = slots[i];
                    if t == EMPTY {
                        return s.no;
                    }
                    if k == w {
                        return t;
                    }
                    i = (i + 1) & wrap;
                }
            }
            _ => {
                let slots = &self.table[s.start as usize..(s.start + s.len) as usize];
                slots.binary_search_by_key(&w, |e| e.0).map_or(s.no, |i| slots[i].1)
            }
        }
    }

    /// How many steps a packet goes through: the per-packet cost, for
    /// tests and benchmarks.
    pub fn path_len(&self, data: &[u8], win: &Windows) -> usize {
        let mut j = self.root;
        let mut n = 0;
        while j < LEAF {
            j = self.step(j, data, win);
            n += 1;
        }
        n
    }

    /// `Some(action)` when every packet gets the same action without a
    /// test (Click's `output_everything`).
    pub fn output_everything(&self) -> Option<Option<u32>> {
        (self.root >= LEAF).then(|| (self.root != DROP).then_some(self.root & !LEAF))
    }

    /// Number of steps.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// The program in Click's `program` handler format: one line per step,
    /// `N OFFSET/VALUE%MASK  yes->J  no->J`, where J is `step N`, an output
    /// `[N]`, or `[X]` for drop; `short->J` when a packet too short for the
    /// step goes elsewhere than `no` (`short->yes` as Click). A dispatch
    /// step, which compares its word against several values at once, lists
    /// the values joined by `|` and their destinations in the same order
    /// (`268/0a010000|0a020000%ffff0000  yes->step 1|[1]  no->[0]`). Then
    /// `safe length` (no step reads past it) and `alignment offset`.
    pub fn unparse(&self) -> String {
        let mut s = String::new();
        let jump = |j: u32| -> String {
            if j == DROP {
                "[X]".to_string()
            } else if j >= LEAF {
                format!("[{}]", j & !LEAF)
            } else {
                format!("step {j}")
            }
        };
        let mut safe = 0;
        for (i, st) in self.steps.iter().enumerate() {
            let base = match (self.listing, st.space) {
                (Listing::Ip, 1) => 256,
                (Listing::Ip, 2) => 512,
                _ => 0,
            };
            safe = safe.max(base + st.end);
            let entries = self.entries(st);
            let values: Vec<String> = entries.iter().map(|e| format!("{:08x}", e.0)).collect();
            let yes: Vec<String> = entries.iter().map(|e| jump(e.1)).collect();
            let _ = write!(
                s,
                "{i:>2} {:>3}/{}%{:08x}  yes->{}  no->{}",
                base + st.off,
                values.join("|"),
                st.mask,
                yes.join("|"),
                jump(st.no)
            );
            if st.short != st.no {
                if entries.len() == 1 && st.short == entries[0].1 {
                    s.push_str("  short->yes");
                } else {
                    let _ = write!(s, "  short->{}", jump(st.short));
                }
            }
            s.push('\n');
        }
        if self.steps.is_empty() {
            let _ = writeln!(s, "all->{}", jump(self.root));
        }
        let _ = writeln!(s, "safe length {safe}");
        s.push_str("alignment offset 0\n");
        s
    }

    fn entries(&self, st: &Step) -> Vec<(u32, u32)> {
        if st.kind == 0 {
            return vec![(st.value, st.yes)];
        }
        let mut v: Vec<(u32, u32)> = self.table[st.start as usize..(st.start + st.len) as usize]
            .iter()
            .copied()
            .filter(|e| e.1 != EMPTY)
            .collect();
        v.sort_unstable();
        v
    }
}

impl Program {
    /// Sends each packet of `batch` to the output the program names for
    /// it, given where its bytes are (`windows`): a program whose every
    /// path ends at one output passes the batch on whole without running.
    #[inline]
    pub fn push(
        &self,
        scatter: &mut Scatter,
        batch: Batch,
        cx: &mut Context<'_>,
        windows: impl Fn(&Packet) -> Windows,
    ) {
        if let Some(all) = self.output_everything() {
            match all {
                Some(o) if (o as usize) < cx.noutputs() => cx.push(o as usize, batch),
                _ => drop(batch),
            }
            return;
        }
        // DROP (u32::MAX) is past every output, so Scatter drops it.
        scatter.send(batch, cx, |p| self.run_code(p.data(), &windows(p)) as usize);
    }
}

// ---------------------------------------------------------------------------
// The compiler.

type NodeId = u32;
const TRUE: NodeId = 0;
const FALSE: NodeId = 1;

/// A formula in negation normal form, hash-consed.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Node {
    True,
    False,
    /// A test (by id), and whether the literal is the test or its negation.
    Lit(u32, bool),
    And(Rc<[NodeId]>),
    Or(Rc<[NodeId]>),
}

/// What a node mentions, to skip it quickly when a branch cannot change it.
#[derive(Clone, Copy, Default)]
struct Info {
    spaces: u8,
    short_spaces: u8,
    words: u64,
}

fn word_bit(space: Space, off: u32) -> u64 {
    1 << (((off >> 2).wrapping_mul(0x9E37_79B9) ^ (space as u32).wrapping_mul(0x85EB_CA6B)) % 64)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    space: Space,
    off: u32,
    mask: u32,
    end: u32,
}

/// What a branch of a step has learned.
#[derive(Clone, Copy)]
enum Learned<'a> {
    /// The bytes are present and the masked word equals this value.
    Eq(u32),
    /// The bytes are present and the masked word is none of these (sorted).
    NotIn(&'a [u32]),
    /// Fewer than `end` bytes of the space are present.
    Short,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct RawStep {
    key: Key,
    /// Sorted by value.
    entries: Vec<(u32, u32)>,
    default: u32,
    short: u32,
}

/// The expansion went over budget.
struct Over;

/// Work (node visits) and new steps allowed for expanding one chunk of
/// rules, how deep an expansion may nest, and the work allowed for all
/// expansions together: past it, the remaining rules are translated
/// plainly.
const CHUNK_WORK: u64 = 1 << 19;
const CHUNK_STEPS: usize = 1 << 12;
const MAX_DEPTH: u32 = 200;
const TOTAL_WORK: u64 = 1 << 23;

struct Compiler {
    tests: Vec<Test>,
    test_ids: HashMap<Test, u32>,
    nodes: Vec<Node>,
    info: Vec<Info>,
    node_ids: HashMap<Node, NodeId>,
    steps: Vec<RawStep>,
    step_ids: HashMap<RawStep, u32>,
    memo: HashMap<Vec<(NodeId, u32)>, u32>,
    /// Substitution results of the current branch, by node: (epoch, result).
    subst_memo: Vec<(u32, NodeId)>,
    seen: Vec<u32>,
    epoch: u32,
    work: u64,
    total_work: u64,
    steps_at_start: usize,
    /// False for the plain translation, which must always succeed.
    bounded: bool,
    floors: [u32; 4],
    /// The budgets: [`CHUNK_WORK`] and [`TOTAL_WORK`] (tests shrink them).
    chunk_work: u64,
    total_limit: u64,
    /// The work done, counted where it is done and apart from the budget,
    /// so that tests can check the budget sees all of it.
    #[cfg(test)]
    ops: u64,
}

impl Compiler {
    fn new() -> Compiler {
        Compiler {
            tests: Vec::new(),
            test_ids: HashMap::new(),
            nodes: vec![Node::True, Node::False],
            info: vec![Info::default(); 2],
            node_ids: HashMap::from([(Node::True, TRUE), (Node::False, FALSE)]),
            steps: Vec::new(),
            step_ids: HashMap::new(),
            memo: HashMap::new(),
            subst_memo: Vec::new(),
            seen: Vec::new(),
            epoch: 0,
            work: 0,
            total_work: 0,
            steps_at_start: 0,
            bounded: true,
            floors: [0; 4],
            chunk_work: CHUNK_WORK,
            total_limit: TOTAL_WORK,
            #[cfg(test)]
            ops: 0,
        }
    }

    /// Counts `n` units of work for tests (see `ops`).
    #[inline(always)]
    fn did(&mut self, n: usize) {
        #[cfg(test)]
        {
            self.ops += n as u64;
        }
        let _ = n;
    }

    fn intern(&mut self, n: Node) -> NodeId {
        if let Some(&id) = self.node_ids.get(&n) {
            return id;
        }
        let info = match &n {
            Node::True | Node::False => Info::default(),
            Node::Lit(t, _) => {
                let t = self.tests[*t as usize];
                let bit = 1u8 << t.space as u8;
                Info {
                    spaces: bit,
                    short_spaces: if t.short { bit } else { 0 },
                    words: word_bit(t.space, t.off),
                }
            }
            Node::And(ks) | Node::Or(ks) => ks.iter().fold(Info::default(), |a, &k| {
                let b = self.info[k as usize];
                Info {
                    spaces: a.spaces | b.spaces,
                    short_spaces: a.short_spaces | b.short_spaces,
                    words: a.words | b.words,
                }
            }),
        };
        let id = self.nodes.len() as NodeId;
        self.nodes.push(n.clone());
        self.info.push(info);
        self.node_ids.insert(n, id);
        id
    }

    fn lit(&mut self, t: Test, positive: bool) -> NodeId {
        let t = Test {
            value: t.value & t.mask,
            ..t
        };
        let next = self.tests.len() as u32;
        let id = *self.test_ids.entry(t).or_insert(next);
        if id == next {
            self.tests.push(t);
        }
        self.intern(Node::Lit(id, positive))
    }

    /// And (`and` true) or Or of `kids`, flattened and simplified.
    fn combine(&mut self, and: bool, kids: Vec<NodeId>) -> NodeId {
        let (unit, zero) = if and { (TRUE, FALSE) } else { (FALSE, TRUE) };
        let mut out: Vec<NodeId> = Vec::with_capacity(kids.len());
        for k in kids {
            if k == zero {
                return zero;
            }
            if k == unit {
                continue;
            }
            match &self.nodes[k as usize] {
                Node::And(ks) if and => out.extend(ks.iter()),
                Node::Or(ks) if !and => out.extend(ks.iter()),
                _ => out.push(k),
            }
        }
        // Repeats add nothing: keep each formula's first occurrence.
        if out.len() > 8 {
            let mut seen = HashSet::new();
            out.retain(|k| seen.insert(*k));
        } else {
            let mut i = 0;
            while i < out.len() {
                if out[..i].contains(&out[i]) {
                    out.remove(i);
                } else {
                    i += 1;
                }
            }
        }
        match out.len() {
            0 => unit,
            1 => out[0],
            _ if and => self.intern(Node::And(out.into())),
            _ => self.intern(Node::Or(out.into())),
        }
    }

    /// Negation normal form of `e` (negated if `neg`).
    fn intern_expr(&mut self, e: &Expr, neg: bool) -> NodeId {
        match e {
            Expr::True => {
                if neg {
                    FALSE
                } else {
                    TRUE
                }
            }
            Expr::False => {
                if neg {
                    TRUE
                } else {
                    FALSE
                }
            }
            Expr::Test(t) => self.lit(*t, !neg),
            Expr::Not(x) => self.intern_expr(x, !neg),
            Expr::And(v) | Expr::Or(v) => {
                let kids = v.iter().map(|x| self.intern_expr(x, neg)).collect();
                self.combine(matches!(e, Expr::And(_)) != neg, kids)
            }
        }
    }

    /// Charges `n` units of work to the chunk's budget. Every loop of the
    /// expansion charges each of its rounds, those that find nothing to do
    /// included, so that the work done is the work charged.
    fn charge(&mut self, n: usize) -> Result<(), Over> {
        self.work += n as u64;
        if self.work > self.chunk_work {
            Err(Over)
        } else {
            Ok(())
        }
    }

    /// Drops rules that cannot match and those after one that always does.
    fn normalize(state: &mut Vec<(NodeId, u32)>) {
        state.retain(|r| r.0 != FALSE);
        if let Some(i) = state.iter().position(|r| r.0 == TRUE) {
            state.truncate(i + 1);
        }
    }

    /// The program for all rules: expanded together if the budget allows,
    /// else in chunks from the last rule back, each chunk's failures
    /// leading to the next chunk's program; a chunk over budget is retried
    /// smaller, and a single rule over budget is translated plainly.
    fn compile_rules(&mut self, roots: &[(NodeId, u32)]) -> u32 {
        let mut next = DROP;
        let mut end = roots.len();
        let mut size = roots.len();
        while end > 0 {
            let start = end - size.min(end);
            if self.total_work > self.total_limit {
                next = self.translate_rules(&roots[..end], next);
                break;
            }
            let mut state = roots[start..end].to_vec();
            state.push((TRUE, next));
            Self::normalize(&mut state);
            self.work = 0;
            self.steps_at_start = self.steps.len();
            let got = self.expand(state, 0);
            self.total_work += self.work;
            match got {
                Ok(j) => {
                    next = j;
                    end = start;
                }
                Err(Over) if size > 1 => size = (size / 4).max(1),
                Err(Over) => {
                    next = self.translate_rules(&roots[start..end], next);
                    end = start;
                }
            }
        }
        next
    }

    /// The program for the pending rules `state` (normalized).
    fn expand(&mut self, state: Vec<(NodeId, u32)>, depth: u32) -> Result<u32, Over> {
        let Some(&(first, action)) = state.first() else {
            return Ok(DROP);
        };
        if first == TRUE {
            return Ok(action);
        }
        // Hashing the state (to look it up, and to store it) is a pass
        // over all of it.
        self.did(state.len());
        self.charge(state.len())?;
        if let Some(&j) = self.memo.get(&state) {
            return Ok(j);
        }
        if depth > MAX_DEPTH {
            return Err(Over);
        }
        let first = self.first_test(first)?;
        let key = self.tests[first as usize].key();
        let values = self.gather(&state, key)?;
        // A rule that requires the word to hold one value (a positive
        // conjunct on it) fails on every branch but that value's: only the
        // others need looking at, which keeps a wide dispatch linear.
        let mut bound: HashMap<u32, Vec<usize>> = HashMap::new();
        let mut free = Vec::new();
        for (i, r) in state.iter().enumerate() {
            let width = self.width(r.0);
            self.did(width);
            self.charge(width)?;
            match self.required(r.0, key) {
                Some(v) => bound.entry(v).or_default().push(i),
                None => free.push(i),
            }
        }
        let mut entries = Vec::with_capacity(values.len());
        for &v in &values {
            let own = bound.remove(&v).unwrap_or_default();
            let st = self.subst_all(&state, &own, &free, key, Learned::Eq(v))?;
            entries.push((v, self.expand(st, depth + 1)?));
        }
        let st = self.subst_all(&state, &free, &[], key, Learned::NotIn(&values))?;
        let default = self.expand(st, depth + 1)?;
        let st = self.subst_all(&state, &free, &[], key, Learned::Short)?;
        let short = self.expand(st, depth + 1)?;
        let j = self.make_step(key, entries, default, short)?;
        self.memo.insert(state, j);
        Ok(j)
    }

    /// The test a rule evaluates first (its leftmost literal).
    fn first_test(&mut self, mut n: NodeId) -> Result<u32, Over> {
        loop {
            self.did(1);
            self.charge(1)?;
            match &self.nodes[n as usize] {
                Node::Lit(t, _) => return Ok(*t),
                Node::And(ks) | Node::Or(ks) => n = ks[0],
                // Normalized rules and their parts are never constant.
                Node::True | Node::False => return Ok(0),
            }
        }
    }

    /// Every value the pending rules compare the word `key` against.
    fn gather(&mut self, state: &[(NodeId, u32)], key: Key) -> Result<Vec<u32>, Over> {
        self.epoch = self.epoch.wrapping_add(1);
        if self.seen.len() < self.nodes.len() {
            self.seen.resize(self.nodes.len(), 0);
        }
        let bit = word_bit(key.space, key.off);
        let mut values = Vec::new();
        let mut stack: Vec<NodeId> = state.iter().map(|r| r.0).collect();
        while let Some(n) = stack.pop() {
            self.did(1);
            self.charge(1)?;
            if self.seen[n as usize] == self.epoch || self.info[n as usize].words & bit == 0 {
                continue;
            }
            self.seen[n as usize] = self.epoch;
            match &self.nodes[n as usize] {
                Node::Lit(t, _) => {
                    let t = &self.tests[*t as usize];
                    if t.key() == key {
                        values.push(t.value);
                    }
                }
                Node::And(ks) | Node::Or(ks) => stack.extend(ks.iter()),
                Node::True | Node::False => {}
            }
        }
        values.sort_unstable();
        values.dedup();
        Ok(values)
    }

    /// How many parts of rule `n` [`required`](Self::required) looks at.
    fn width(&self, n: NodeId) -> usize {
        match &self.nodes[n as usize] {
            Node::And(ks) => ks.len(),
            _ => 1,
        }
    }

    /// The value rule `n` requires of word `key`, if one of its
    /// conjuncts is a plain positive test of it.
    fn required(&self, n: NodeId, key: Key) -> Option<u32> {
        let lit = |m: NodeId| match &self.nodes[m as usize] {
            Node::Lit(t, true) => {
                let t = &self.tests[*t as usize];
                (t.key() == key && !t.short).then_some(t.value)
            }
            _ => None,
        };
        match &self.nodes[n as usize] {
            Node::And(ks) => ks.iter().find_map(|&k| lit(k)),
            _ => lit(n),
        }
    }

    /// The rules `state[i]` for `i` in `a` or `b` (both ascending), in
    /// order, given what a branch learned; the rules left out are known to
    /// fail there. The two lists are merged as they are read, so that
    /// rules after one that now always matches cost nothing: a value's
    /// own rule that decides its branch does not make it a pass over all
    /// the others.
    fn subst_all(
        &mut self,
        state: &[(NodeId, u32)],
        a: &[usize],
        b: &[usize],
        key: Key,
        learned: Learned,
    ) -> Result<Vec<(NodeId, u32)>, Over> {
        self.epoch = self.epoch.wrapping_add(1);
        let mut out = Vec::new();
        let (mut x, mut y) = (0, 0);
        while x < a.len() || y < b.len() {
            let i = if y == b.len() || (x < a.len() && a[x] < b[y]) {
                x += 1;
                a[x - 1]
            } else {
                y += 1;
                b[y - 1]
            };
            let (n, action) = state[i];
            let r = self.subst(n, key, learned)?;
            if r == FALSE {
                continue;
            }
            out.push((r, action));
            if r == TRUE {
                break;
            }
        }
        Ok(out)
    }

    fn subst(&mut self, n: NodeId, key: Key, learned: Learned) -> Result<NodeId, Over> {
        // Charged before the quick relevance test: rules it skips cost a
        // call each all the same.
        self.did(1);
        self.charge(1)?;
        let info = self.info[n as usize];
        let bit = 1u8 << key.space as u8;
        let relevant = match learned {
            Learned::Short => info.spaces & bit != 0,
            _ => info.short_spaces & bit != 0 || info.words & word_bit(key.space, key.off) != 0,
        };
        if !relevant {
            return Ok(n);
        }
        if let Some(&(e, r)) = self.subst_memo.get(n as usize) {
            if e == self.epoch {
                return Ok(r);
            }
        }
        let r = match self.nodes[n as usize].clone() {
            Node::Lit(t, positive) => {
                let t = self.tests[t as usize];
                match learn(&t, key, learned, self.floors[key.space as usize]) {
                    Outcome::Same => n,
                    Outcome::Known(b) => {
                        if b == positive {
                            TRUE
                        } else {
                            FALSE
                        }
                    }
                    Outcome::Present => self.lit(Test { short: false, ..t }, positive),
                }
            }
            Node::And(ks) | Node::Or(ks) => {
                let and = matches!(self.nodes[n as usize], Node::And(_));
                let zero = if and { FALSE } else { TRUE };
                let mut out = Vec::with_capacity(ks.len());
                let mut changed = false;
                for &k in ks.iter() {
                    let r = self.subst(k, key, learned)?;
                    changed |= r != k;
                    if r == zero {
                        out.clear();
                        out.push(zero);
                        break;
                    }
                    out.push(r);
                }
                if changed {
                    let spliced = self.spliced(and, &out);
                    self.did(spliced);
                    self.charge(spliced)?;
                    self.combine(and, out)
                } else {
                    n
                }
            }
            Node::True | Node::False => n,
        };
        if self.subst_memo.len() <= n as usize {
            self.subst_memo.resize(self.nodes.len().max(n as usize + 1), (0, 0));
        }
        self.subst_memo[n as usize] = (self.epoch, r);
        Ok(r)
    }

    /// How many parts [`combine`](Self::combine) splices in from those of
    /// `kids` that are of its own kind.
    fn spliced(&self, and: bool, kids: &[NodeId]) -> usize {
        kids.iter()
            .map(|&k| match &self.nodes[k as usize] {
                Node::And(ks) if and => ks.len(),
                Node::Or(ks) if !and => ks.len(),
                _ => 0,
            })
            .sum()
    }

    fn make_step(&mut self, key: Key, mut entries: Vec<(u32, u32)>, default: u32, short: u32) -> Result<u32, Over> {
        entries.retain(|e| e.1 != default);
        if entries.is_empty() {
            if short == default {
                return Ok(default);
            }
            // Only the length matters: a step whose mask accepts anything.
            return self.add_step(RawStep {
                key: Key { mask: 0, ..key },
                entries: vec![(0, default)],
                default,
                short,
            });
        }
        self.add_step(RawStep {
            key,
            entries,
            default,
            short,
        })
    }

    fn add_step(&mut self, s: RawStep) -> Result<u32, Over> {
        if let Some(&j) = self.step_ids.get(&s) {
            return Ok(j);
        }
        if self.bounded && self.steps.len() - self.steps_at_start >= CHUNK_STEPS {
            return Err(Over);
        }
        let j = self.steps.len() as u32;
        self.steps.push(s.clone());
        self.step_ids.insert(s, j);
        Ok(j)
    }

    /// The last resort, Click's plain program: each rule's formula
    /// translated as written, its failure leading to the next rule.
    fn translate_rules(&mut self, roots: &[(NodeId, u32)], mut next: u32) -> u32 {
        let bounded = std::mem::replace(&mut self.bounded, false);
        for &(n, a) in roots.iter().rev() {
            next = self.translate(n, a, next);
        }
        self.bounded = bounded;
        next
    }

    fn translate(&mut self, n: NodeId, yes: u32, no: u32) -> u32 {
        match self.nodes[n as usize].clone() {
            Node::True => yes,
            Node::False => no,
            Node::Lit(t, positive) => {
                let t = self.tests[t as usize];
                let (hit, miss) = if positive { (yes, no) } else { (no, yes) };
                let short = if t.short { hit } else { miss };
                let s = RawStep {
                    key: t.key(),
                    entries: vec![(t.value, hit)],
                    default: miss,
                    short,
                };
                if hit == miss && short == miss {
                    return miss;
                }
                // Unbounded here, so this cannot fail.
                self.add_step(s).unwrap_or(miss)
            }
            Node::And(ks) => ks.iter().rev().fold(yes, |acc, &k| self.translate(k, acc, no)),
            Node::Or(ks) => ks.iter().rev().fold(no, |acc, &k| self.translate(k, yes, acc)),
        }
    }

    /// Lays out the steps reachable from `root`, parents before children
    /// (so every jump goes forward, as in Click's listings), and builds
    /// their tables.
    fn finish(self, root: u32, listing: Listing) -> Program {
        let n = self.steps.len();
        let children = |s: &RawStep| -> Vec<u32> {
            // Visited last comes out first: the first value's subtree
            // follows its step.
            let mut v = vec![s.short, s.default];
            v.extend(s.entries.iter().rev().map(|e| e.1));
            v.retain(|&j| j < LEAF);
            v
        };
        let mut post = Vec::new();
        let mut mark = vec![0u8; n];
        if root < LEAF {
            let mut stack = vec![(root, children(&self.steps[root as usize]), 0usize)];
            mark[root as usize] = 1;
            while let Some(top) = stack.last_mut() {
                if top.2 < top.1.len() {
                    let c = top.1[top.2];
                    top.2 += 1;
                    if mark[c as usize] == 0 {
                        mark[c as usize] = 1;
                        let kids = children(&self.steps[c as usize]);
                        stack.push((c, kids, 0));
                    }
                } else {
                    post.push(top.0);
                    stack.pop();
                }
            }
        }
        post.reverse();
        let mut index = vec![u32::MAX; n];
        for (i, &s) in post.iter().enumerate() {
            index[s as usize] = i as u32;
        }
        let map = |j: u32| if j < LEAF { index[j as usize] } else { j };
        let mut steps = Vec::with_capacity(post.len());
        let mut table = Vec::new();
        for &s in &post {
            let r = &self.steps[s as usize];
            let mut st = Step {
                space: r.key.space as u8,
                kind: 0,
                shift: 0,
                off: r.key.off,
                end: r.key.end,
                mask: r.key.mask,
                value: r.entries[0].0,
                yes: map(r.entries[0].1),
                no: map(r.default),
                short: map(r.short),
                start: 0,
                len: 0,
            };
            if r.entries.len() > 1 {
                let entries: Vec<(u32, u32)> = r.entries.iter().map(|e| (e.0, map(e.1))).collect();
                st.start = table.len() as u32;
                if entries.len() <= LINEAR_MAX {
                    st.kind = 1;
                    st.len = entries.len() as u32;
                    table.extend(entries);
                } else if let Some((slots, bits)) = hash_table(&entries) {
                    st.kind = 2;
                    st.shift = 32 - bits as u8;
                    st.len = slots.len() as u32;
                    table.extend(slots);
                } else {
                    // Sorted by value, as a RawStep's entries are.
                    st.kind = 3;
                    st.len = entries.len() as u32;
                    table.extend(entries);
                }
            }
            steps.push(st);
        }
        Program {
            steps,
            table,
            root: map(root),
            listing,
        }
    }
}

/// An open-addressing table (linear probing, at most half full) whose
/// longest run of occupied slots is short, so that a miss costs a few
/// probes at worst; `None` if the values cluster whatever the size (as
/// values picked against the hash do). The size stays within a small
/// multiple of the entries, and each try stops at the first long run.
fn hash_table(entries: &[(u32, u32)]) -> Option<(Vec<(u32, u32)>, u32)> {
    let base = ((entries.len() * 2).next_power_of_two().trailing_zeros()).max(4);
    'size: for bits in base..=base + MAX_GROWTH {
        let size = 1usize << bits;
        let mut slots = vec![(0u32, EMPTY); size];
        for &(v, t) in entries {
            let mut i = (v.wrapping_mul(HASH_MUL) >> (32 - bits)) as usize;
            let mut probes = 0;
            while slots[i].1 != EMPTY {
                probes += 1;
                if probes >= MAX_CLUSTER {
                    continue 'size;
                }
                i = (i + 1) & (size - 1);
            }
            slots[i] = (v, t);
        }
        let mut longest = 0;
        let mut run = 0;
        // Twice round, for runs that wrap.
        for k in 0..2 * size {
            if slots[k & (size - 1)].1 == EMPTY {
                run = 0;
            } else {
                run += 1;
                longest = longest.max(run);
            }
        }
        if longest <= MAX_CLUSTER {
            return Some((slots, bits));
        }
    }
    None
}

enum Outcome {
    /// Nothing learned about this test.
    Same,
    /// The test's outcome.
    Known(bool),
    /// Its bytes are present: its short outcome no longer matters.
    Present,
}

/// What `learned` at a step on word `key` says about test `t`, when a
/// present window of their space has at least `floor` bytes.
fn learn(t: &Test, key: Key, learned: Learned, floor: u32) -> Outcome {
    if t.space != key.space {
        return Outcome::Same;
    }
    if let Learned::Short = learned {
        // Shorter than a floor means empty.
        return if t.end >= key.end || key.end <= floor {
            Outcome::Known(t.short)
        } else {
            Outcome::Same
        };
    }
    let present = t.end <= key.end.max(floor);
    let value = if t.off == key.off {
        compare(t, key.mask, learned)
    } else {
        None
    };
    match (present, value) {
        (true, Some(b)) => Outcome::Known(b),
        (true, None) if t.short => Outcome::Present,
        // An absent test yields its short outcome: known if that agrees.
        (false, Some(b)) if b == t.short => Outcome::Known(b),
        _ => Outcome::Same,
    }
}

/// The outcome of `t` if its bytes are present, given what is known of
/// the same word under mask `m`.
fn compare(t: &Test, m: u32, learned: Learned) -> Option<bool> {
    let eq = |v: u32| {
        if (v ^ t.value) & m & t.mask != 0 {
            Some(false)
        } else if t.mask & !m == 0 {
            Some(true)
        } else {
            None
        }
    };
    match learned {
        Learned::Eq(v) => eq(v),
        Learned::NotIn(vals) => {
            if m.count_ones() == 1 && vals.len() == 1 {
                // One bit that is not this value is the other value.
                eq(vals[0] ^ m)
            } else if m & !t.mask == 0 && vals.binary_search(&(t.value & m)).is_ok() {
                Some(false)
            } else {
                None
            }
        }
        Learned::Short => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(off: u32, mask: u32, value: u32) -> Expr {
        Expr::Test(Test::new(
            Space::Data,
            off,
            mask,
            value,
            off + 4 - mask.trailing_zeros() / 8,
        ))
    }

    #[test]
    fn click_classifier_example_program() {
        // Click's Classifier doc example: ARP request, ARP reply, IP, rest.
        let rules = vec![
            (
                Expr::And(vec![t(12, 0xffff0000, 0x08060000), t(20, 0xffff0000, 0x00010000)]),
                Some(0),
            ),
            (
                Expr::And(vec![t(12, 0xffff0000, 0x08060000), t(20, 0xffff0000, 0x00020000)]),
                Some(1),
            ),
            (t(12, 0xffff0000, 0x08000000), Some(2)),
            (Expr::True, Some(3)),
        ];
        let p = Program::compile(&rules, Listing::Data);
        let want = [
            " 0  12/08000000|08060000%ffff0000  yes->[2]|step 1  no->[3]",
            " 1  20/00010000|00020000%ffff0000  yes->[0]|[1]  no->[3]",
            "safe length 22",
            "alignment offset 0",
        ];
        assert_eq!(p.unparse(), want.join("\n") + "\n");
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[8, 6]);
        arp[20..22].copy_from_slice(&[0, 2]);
        assert_eq!(p.run(&arp, &Windows::data(arp.len())), Some(1));
        assert_eq!(p.run(&arp[..21], &Windows::data(21)), Some(3));
        assert_eq!(p.run(&[], &Windows::data(0)), Some(3));
    }

    #[test]
    fn constant_programs_print_all() {
        let p = Program::compile(&[], Listing::Ip);
        assert_eq!(p.unparse(), "all->[X]\nsafe length 0\nalignment offset 0\n");
        assert_eq!(p.output_everything(), Some(None));
        let p = Program::compile(&[(Expr::False, Some(1)), (Expr::True, Some(0))], Listing::Ip);
        assert_eq!(p.unparse(), "all->[0]\nsafe length 0\nalignment offset 0\n");
        assert_eq!(p.output_everything(), Some(Some(0)));
    }

    #[test]
    fn negation_and_short_outcomes() {
        // A negated test matches a packet too short for it; a test
        // negated "present" does not.
        let plain = t(4, 0xff000000, 0x01000000);
        let rules = vec![(plain.clone().negate(), Some(0))];
        let p = Program::compile(&rules, Listing::Data);
        assert_eq!(p.run(&[0; 2], &Windows::data(2)), Some(0));
        assert_eq!(p.run(&[0, 0, 0, 0, 1], &Windows::data(5)), None);
        let rules = vec![(plain.negate_present(), Some(0))];
        let p = Program::compile(&rules, Listing::Data);
        assert_eq!(p.run(&[0; 2], &Windows::data(2)), None);
        assert_eq!(p.run(&[0, 0, 0, 0, 2], &Windows::data(5)), Some(0));
        assert!(p.unparse().contains("short->"), "{}", p.unparse());
    }

    #[test]
    fn many_rules_on_one_word_dispatch_in_one_step() {
        let mut rules: Vec<(Expr, Option<u32>)> = (0..100u32)
            .map(|i| {
                let e = Expr::And(vec![
                    t(12, 0xffff0000, (10 << 24) | (i << 16)),
                    t(20, 0x0000ffff, 1000 + i),
                ]);
                (e, None)
            })
            .collect();
        rules.push((Expr::True, Some(0)));
        let p = Program::compile(&rules, Listing::Data);
        let mut pkt = vec![0u8; 40];
        pkt[12] = 10;
        pkt[13] = 42;
        pkt[22..24].copy_from_slice(&1042u16.to_be_bytes());
        let w = Windows::data(40);
        assert_eq!(p.run(&pkt, &w), None);
        assert_eq!(p.path_len(&pkt, &w), 2);
        pkt[23] ^= 1;
        assert_eq!(p.run(&pkt, &w), Some(0));
        pkt[13] = 200;
        assert_eq!(p.run(&pkt, &w), Some(0));
        assert_eq!(p.path_len(&pkt, &w), 1);
        assert!(p.unparse().starts_with(" 0  12/0a000000|0a010000|"), "{}", p.unparse());
    }

    #[test]
    fn the_fallback_translation_matches_too() {
        let mut c = Compiler::new();
        let rules = vec![
            (
                Expr::Or(vec![t(0, 0xff000000, 0x01000000), t(4, 0xff, 2).negate()]),
                Some(1),
            ),
            (Expr::And(vec![t(0, 0xff000000, 0x02000000), t(8, 0xffff, 7)]), None),
            (Expr::True, Some(0)),
        ];
        let roots: Vec<_> = rules.iter().map(|(e, a)| (c.intern_expr(e, false), leaf(*a))).collect();
        let root = c.translate_rules(&roots, DROP);
        let p = c.finish(root, Listing::Data);
        for pkt in [
            &[1u8][..],
            &[2, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 7],
            &[2, 0, 0, 0, 0, 0, 0, 2],
            &[3; 12],
        ] {
            let w = Windows::data(pkt.len());
            assert_eq!(
                p.run(pkt, &w),
                first_match(&rules, pkt, &w).map(|o| o as usize),
                "{pkt:?}\n{}",
                p.unparse()
            );
        }
    }

    /// Compiles with the given budgets; also returns the work done (as
    /// counted apart from the budget) and the work charged.
    fn compile_counted(rules: &[(Expr, Option<u32>)], chunk_work: u64, total_limit: u64) -> (Program, u64, u64) {
        let mut c = Compiler::new();
        c.chunk_work = chunk_work;
        c.total_limit = total_limit;
        let roots: Vec<_> = rules.iter().map(|(e, a)| (c.intern_expr(e, false), leaf(*a))).collect();
        let root = c.compile_rules(&roots);
        let (ops, charged) = (c.ops, c.total_work);
        (c.finish(root, Listing::Data), ops, charged)
    }

    fn agrees(p: &Program, rules: &[(Expr, Option<u32>)], packets: &[Vec<u8>]) {
        for pkt in packets {
            let w = Windows::data(pkt.len());
            assert_eq!(p.run(pkt, &w), first_match(rules, pkt, &w).map(|o| o as usize));
        }
    }

    #[test]
    fn the_budget_sees_all_the_work() {
        // A chain of rules on distinct words, then rules in another space
        // that no step on those words concerns (the quick relevance test
        // skips them): every step still hashes, scans and substitutes
        // over all of them, which must be charged, or the work is the
        // budget times the number of rules.
        let mut rules: Vec<(Expr, Option<u32>)> =
            (0..300u32).map(|i| (t(4 * i, 0xff, i & 0xff), Some(i % 4))).collect();
        for i in 0..1500u32 {
            let test = Test::new(Space::Net, 4 * i, 0xffff, i, 4 * i + 4);
            rules.push((Expr::Test(test), Some(i % 3)));
        }
        let (chunk, total) = (1 << 14, 1 << 17);
        let (p, ops, charged) = compile_counted(&rules, chunk, total);
        assert!(charged <= total + chunk + rules.len() as u64, "charged {charged}");
        assert!(ops <= charged, "work {ops} beyond the {charged} charged");
        let mut pkt = vec![0u8; 1200];
        for (i, w) in pkt.chunks_mut(4).enumerate() {
            w[3] = i as u8;
        }
        let mut other = pkt.clone();
        other[3 + 4 * 77] ^= 1;
        agrees(&p, &rules, &[pkt.clone(), other, pkt[..500].to_vec(), Vec::new()]);
    }

    #[test]
    fn values_picked_against_the_hash_get_a_small_table() {
        // Values whose hashes all fall in the first slot, at every table
        // size: no table breaks up their run, and growing one to find out
        // must stop at a small multiple of the values (it went to a
        // million slots, 8 MB a step). They are searched by halves.
        let mut inv: u32 = 1;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(HASH_MUL.wrapping_mul(inv)));
        }
        assert_eq!(inv.wrapping_mul(HASH_MUL), 1);
        for n in [9u32, 100, 2000] {
            let values: Vec<u32> = (0..n).map(|i| i.wrapping_mul(inv)).collect();
            let rules: Vec<(Expr, Option<u32>)> = values
                .iter()
                .zip(0..)
                .map(|(&v, i)| (Expr::Test(Test::new(Space::Data, 0, u32::MAX, v, 4)), Some(i)))
                .collect();
            let p = Program::compile(&rules, Listing::Data);
            assert_eq!(p.len(), 1);
            assert!(p.table.len() <= 16 * n as usize, "{n} values, {} slots", p.table.len());
            for (i, &v) in values.iter().enumerate() {
                assert_eq!(p.run(&v.to_be_bytes(), &Windows::data(4)), Some(i));
            }
            for miss in [n.wrapping_mul(inv), 0xffff_ffff, 12345] {
                if !values.contains(&miss) {
                    assert_eq!(p.run(&miss.to_be_bytes(), &Windows::data(4)), None);
                }
            }
        }
    }

    #[test]
    fn a_wide_dispatch_does_not_copy_the_other_rules_per_value() {
        // A thousand rules on one word's values, then a thousand on a word
        // in another space: each value's branch is decided by its own
        // rule at once, and must not cost a pass over the thousand others.
        let mut rules: Vec<(Expr, Option<u32>)> = (0..1000u32).map(|i| (t(0, u32::MAX, i), Some(i % 4))).collect();
        for i in 0..1000u32 {
            rules.push((Expr::Test(Test::new(Space::Net, 0, u32::MAX, i, 4)), Some(i % 3)));
        }
        let (p, ops, charged) = compile_counted(&rules, CHUNK_WORK, TOTAL_WORK);
        assert!(ops <= charged, "work {ops} beyond the {charged} charged");
        assert!(charged < 20_000, "charged {charged} for a linear rule set");
        assert_eq!(p.len(), 2, "a dispatch on each word");
        agrees(
            &p,
            &rules,
            &[999u32.to_be_bytes().to_vec(), 1000u32.to_be_bytes().to_vec()],
        );
    }

    #[test]
    fn parts_spliced_into_a_rule_are_charged() {
        // On every value's branch but one, the first rule's `or` falls to
        // its long `and`, whose parts join the rule's own: a pass over
        // 600 parts per value, to be charged as such.
        let net = |v| Expr::Test(Test::new(Space::Net, 8, u32::MAX, v, 12));
        let long = Expr::And((2..602).map(net).collect());
        let mut rules = vec![(
            Expr::And(vec![Expr::Or(vec![t(0, u32::MAX, 5000), long]), net(1)]),
            Some(0),
        )];
        rules.extend((0..600u32).map(|i| (t(0, u32::MAX, i), Some(1 + i % 4))));
        let (p, ops, charged) = compile_counted(&rules, CHUNK_WORK, TOTAL_WORK);
        assert!(ops <= charged, "work {ops} beyond the {charged} charged");
        agrees(
            &p,
            &rules,
            &[7u32.to_be_bytes().to_vec(), 5000u32.to_be_bytes().to_vec()],
        );
    }

    #[test]
    fn messy_large_rule_sets_compile_in_bounded_work() {
        // Thousands of rules mixing and, or and not over hundreds of
        // words, masks and values: whatever the compiler does with them,
        // its work stays within the budgets. An eighth of the default
        // budgets keeps the test quick in debug builds (where a unit of
        // work is about 0.4 us, the default budgets' worst 3.5 s).
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: u32| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % u64::from(n)) as u32
        };
        let masks = [0xffff_ffff, 0xff00_0000, 0x00ff_0000, 0x0000_ffff, 0x0000_0001];
        let test = |rand: &mut dyn FnMut(u32) -> u32| {
            let (off, mask) = (4 * rand(300), masks[rand(5) as usize]);
            t(off, mask, rand(4).wrapping_mul(0x0101_0101) & mask)
        };
        let mut rules = Vec::new();
        for _ in 0..3000 {
            let mut parts: Vec<Expr> = (0..1 + rand(4)).map(|_| test(&mut rand)).collect();
            if rand(3) == 0 {
                parts[0] = parts[0].clone().negate();
            }
            let e = match rand(3) {
                0 => Expr::And(parts),
                1 => Expr::Or(parts),
                _ => Expr::And(vec![test(&mut rand), Expr::Or(parts)]),
            };
            rules.push((e, Some(rand(8))));
        }
        let (chunk, total) = (CHUNK_WORK / 8, TOTAL_WORK / 8);
        let (p, ops, charged) = compile_counted(&rules, chunk, total);
        assert!(charged <= total + chunk + rules.len() as u64, "charged {charged}");
        assert!(ops <= charged, "work {ops} beyond the {charged} charged");
        let packets: Vec<Vec<u8>> = (0..20)
            .map(|k| (0..1 + 60 * k).map(|_| [0u8, 1, 2, 3][rand(4) as usize]).collect())
            .collect();
        agrees(&p, &rules, &packets);
    }

    fn arb_test() -> impl Strategy<Value = Test> {
        // A few offsets, masks and values, so that rules share words.
        (0u32..3, 0usize..5, 0u32..4, 1u32..5, any::<bool>()).prop_map(|(w, m, v, len, short)| {
            let masks = [0xffff0000, 0x0000ffff, 0xff000000, 0x00010000, 0xffffffff];
            let mask = masks[m];
            let value = (v.wrapping_mul(0x0101_0101)) & mask;
            Test {
                short,
                ..Test::new(Space::Data, w * 4, mask, value, w * 4 + len)
            }
        })
    }

    fn arb_expr() -> impl Strategy<Value = Expr> {
        let leaf = prop_oneof![
            8 => arb_test().prop_map(Expr::Test),
            1 => Just(Expr::True),
            1 => Just(Expr::False),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(Expr::negate),
                inner.clone().prop_map(Expr::negate_present),
                prop::collection::vec(inner.clone(), 1..4).prop_map(Expr::And),
                prop::collection::vec(inner, 1..4).prop_map(Expr::Or),
            ]
        })
    }

    fn arb_packet() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop_oneof![Just(0u8), Just(1), Just(2), Just(3), Just(0xff)], 0..14)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn compiled_programs_agree_with_naive_evaluation(
            rules in prop::collection::vec((arb_expr(), prop::option::of(0u32..4)), 0..8),
            packets in prop::collection::vec(arb_packet(), 1..24),
        ) {
            let p = Program::compile(&rules, Listing::Data);
            // The plain translation too, which larger rule sets fall back to.
            let mut c = Compiler::new();
            let roots: Vec<_> = rules.iter().map(|(e, a)| (c.intern_expr(e, false), leaf(*a))).collect();
            let root = c.translate_rules(&roots, DROP);
            let plain = c.finish(root, Listing::Data);
            for pkt in &packets {
                let w = Windows::data(pkt.len());
                let want = first_match(&rules, pkt, &w).map(|o| o as usize);
                prop_assert_eq!(p.run(pkt, &w), want, "{:?}\n{}", pkt, p.unparse());
                prop_assert_eq!(plain.run(pkt, &w), want, "{:?}\n{}", pkt, plain.unparse());
            }
        }

        #[test]
        fn hash_dispatch_finds_every_value(values in prop::collection::hash_set(any::<u32>(), 9..300)) {
            let rules: Vec<(Expr, Option<u32>)> = values
                .iter()
                .enumerate()
                .map(|(i, &v)| (Expr::Test(Test::new(Space::Data, 0, u32::MAX, v, 4)), Some(i as u32)))
                .collect();
            let p = Program::compile(&rules, Listing::Data);
            prop_assert_eq!(p.len(), 1);
            for (i, &v) in values.iter().enumerate() {
                prop_assert_eq!(p.run(&v.to_be_bytes(), &Windows::data(4)), Some(i));
                let miss = v.wrapping_add(1);
                if !values.contains(&miss) {
                    prop_assert_eq!(p.run(&miss.to_be_bytes(), &Windows::data(4)), None);
                }
            }
        }
    }
}
