//! Every kind of configuration error, with its exact position and text.
//! The configurations are real files' worth of text; the errors are what
//! `switchyard check` prints.

mod common;

use switchyard_core::load_text;

/// The rendered errors of `text`, loaded as file `t.click`.
fn errors(text: &str) -> String {
    match load_text("t.click", text, &switchyard_elements::standard(), &[]) {
        Ok(_) => panic!("expected errors in:\n{text}"),
        Err(e) => e,
    }
}

/// The `file:line:col: error: message` lines only.
fn headlines(text: &str) -> Vec<String> {
    errors(text)
        .lines()
        .filter(|l| l.starts_with("t.click:") && l.contains(": error: "))
        .map(str::to_string)
        .collect()
}

fn ok(text: &str) {
    if let Err(e) = load_text("t.click", text, &switchyard_elements::standard(), &[]) {
        panic!("unexpected errors:\n{e}");
    }
}

#[test]
fn unknown_class_suggests_the_nearest_name() {
    let e = errors("src :: InfiniteSource(LIMIT 1);\nsrc -> c :: Countr -> Discard;\n");
    assert_eq!(
        e,
        "t.click:2:13: error: unknown element class 'Countr'\n\
         2 | src -> c :: Countr -> Discard;\n  |             ^^^^^^\n  = help: did you mean 'Counter'?\n"
    );
}

#[test]
fn duplicate_name_points_at_both_declarations() {
    let e = errors("a :: Idle;\na :: Counter;\n");
    assert!(
        e.starts_with("t.click:2:1: error: redeclaration of element 'a'\n"),
        "{e}"
    );
    assert!(
        e.contains("t.click:1:1: note: element 'a' previously declared here"),
        "{e}"
    );
}

#[test]
fn port_out_of_range() {
    let h = headlines("InfiniteSource -> hub :: Tee(2);\nhub[0] -> Discard;\nhub[1] -> Discard;\nhub[2] -> Discard;\n");
    assert_eq!(h, ["t.click:4:8: error: 'hub :: Tee' has no output 2"]);
    let h = headlines("Idle -> [1]c :: Counter -> Discard;");
    assert_eq!(
        h,
        [
            "t.click:1:6: error: 'c :: Counter' has no input 1",
            "t.click:1:12: error: 'c :: Counter' input 0 unused"
        ]
    );
}

#[test]
fn unconnected_port() {
    let h = headlines("src :: InfiniteSource;\nsrc -> hub :: Tee(2);\nhub[0] -> Discard;\n");
    assert_eq!(h, ["t.click:2:8: error: 'hub :: Tee' output 1 unused"]);
    let h = headlines("c :: Counter -> Discard;");
    assert_eq!(h, ["t.click:1:1: error: 'c :: Counter' input 0 unused"]);
}

#[test]
fn push_output_connected_twice() {
    let e = errors("s :: InfiniteSource;\ns -> Discard;\ns -> Discard;\n");
    assert!(
        e.starts_with("t.click:3:3: error: illegal reuse of 's :: InfiniteSource' push output 0\n"),
        "{e}"
    );
    assert!(e.contains("t.click:2:3: note: first connected here"), "{e}");
    assert!(e.contains("help: use a Tee"), "{e}");
}

#[test]
fn push_pull_mismatch() {
    // A pull output may feed several pullers; that is fine. Pushing into a
    // pull input is not.
    ok("InfiniteSource -> q :: Queue;\nq -> u :: Unqueue -> Discard;\nq -> Discard;\n");
    let h = headlines("InfiniteSource -> q1 :: Queue;\nq1 -> c :: Counter -> q2 :: Queue;\nq2 -> Discard;\n");
    assert_eq!(
        h,
        ["t.click:2:20: error: push/pull mismatch: 'c :: Counter' pull output 0 connected to 'q2 :: Queue' push input 0"]
    );
}

#[test]
fn agnostic_ports_resolve_as_click_does() {
    // Counter between a Queue and an Unqueue pulls; before a Queue it pushes.
    let text = "InfiniteSource -> a :: Counter -> q :: Queue -> b :: Counter -> Unqueue -> Discard;";
    let (_, table) = load_text("t.click", text, &switchyard_elements::standard(), &[]).unwrap();
    assert!(
        table.read("a.ports").unwrap().contains("1 input\npush"),
        "{}",
        table.read("a.ports").unwrap()
    );
    assert!(
        table.read("b.ports").unwrap().contains("1 input\npull"),
        "{}",
        table.read("b.ports").unwrap()
    );
    // Discard on a pull path becomes a pulling task; no error.
    ok("InfiniteSource(LIMIT 1) -> q :: Queue -> Counter -> Discard;");
}

#[test]
fn bad_argument_names_element_and_argument() {
    let h = headlines("s :: InfiniteSource(LIMIT lots) -> Discard;");
    assert_eq!(
        h,
        ["t.click:1:21: error: 's :: InfiniteSource': LIMIT: expected an integer, found 'lots'"]
    );
    let e = errors("s :: InfiniteSource(LIMT 5) -> Discard;");
    assert!(
        e.starts_with("t.click:1:21: error: 's :: InfiniteSource': unknown argument 'LIMT'\n"),
        "{e}"
    );
    assert!(e.contains("did you mean 'LIMIT'?"), "{e}");
    let h = headlines("InfiniteSource -> s :: StaticSwitch -> Discard;");
    assert_eq!(
        h,
        ["t.click:1:24: error: 's :: StaticSwitch': missing mandatory argument K"]
    );
    let h = headlines("InfiniteSource -> s :: Switch(3); s[0] -> Discard; s[1] -> Discard;");
    assert_eq!(
        h,
        ["t.click:1:19: error: 's :: Switch': switch position 3 out of range: expected -1 to 1"]
    );
    let h = headlines("InfiniteSource -> Tee(1, 2) -> Discard;");
    assert_eq!(h, ["t.click:1:26: error: 'Tee@2 :: Tee': too many arguments"]);
}

#[test]
fn syntax_errors_undefined_variables_and_requirements() {
    let h = headlines("a :: Idle;\na -> -> b;\n");
    assert_eq!(
        h,
        ["t.click:2:6: error: syntax error near '->': expected an element name or class"]
    );
    let e = errors("define($LIMIT 5);\nInfiniteSource(LIMIT $LIMT) -> Discard;\n");
    assert!(
        e.starts_with("t.click:2:16: error: undefined variable '$LIMT'\n"),
        "{e}"
    );
    assert!(e.contains("did you mean '$LIMIT'?"), "{e}");
    let h = headlines("require(fastclick);\nIdle -> Idle;\n");
    assert_eq!(h, ["t.click:1:9: error: requirement 'fastclick' is not available"]);
    ok("require(switchyard); Idle -> Idle;");
}

#[test]
fn every_error_of_a_file_is_reported_in_source_order() {
    let text = "src :: InfiniteSource(LIMIT 10, STOP maybe);\n\
                src -> hub :: Tee(2);\n\
                hub[0] -> old :: Countr -> Discard;\n\
                hub[1] -> new :: Counter;\n";
    let h = headlines(text);
    assert_eq!(
        h,
        [
            "t.click:1:33: error: 's :: InfiniteSource': STOP: expected true or false, found 'maybe'"
                .replace("'s ::", "'src ::")
                .as_str(),
            "t.click:3:18: error: unknown element class 'Countr'",
            "t.click:4:11: error: 'new :: Counter' output 0 unused",
        ]
    );
}

#[test]
fn compound_errors_name_the_inner_element() {
    let h = headlines("elementclass B { input -> c :: Counter(5) -> output; }\nInfiniteSource -> b :: B -> Discard;\n");
    assert_eq!(h, ["t.click:1:40: error: 'b/c :: Counter': too many arguments"]);
    let h = headlines("elementclass B { $x | input -> output; }\nInfiniteSource -> b :: B -> Discard;\n");
    assert_eq!(h, ["t.click:2:19: error: 'b :: B' takes 1 argument(s), 0 given"]);
}

/// A seeded stand-in for the config fuzz target that runs on stable: the
/// rollback configuration with random edits (tokens of the language
/// inserted, bytes deleted or replaced). Loading never panics, and errors
/// always come back rendered with a position.
#[test]
fn mutated_configs_never_panic() {
    let base = include_str!("../configs/rollback.click");
    let tokens = [
        "->",
        "=>",
        "::",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ",",
        ";",
        "\"",
        "'",
        "$",
        "$RATE",
        "\\<",
        ">",
        "/*",
        "*/",
        "//",
        "\n",
        "elementclass",
        "define(",
        "require(",
        "Tee(2)",
        "[3]",
        "@",
        "-1",
        "99999999999999999999",
        "input",
        "output",
        "é",
        "{ input -> output }",
        "( input -> output )",
        "||",
        "...",
        "{ $x | input -> Paint($x) -> output }(1)",
        "[0, 1]",
        "[]",
        "[1, ]",
        "LIMIT $n",
        "__REST__ $r",
        "|",
        "provide(x)",
        "require(library",
        "require(package switchyard)",
    ];
    let registry = switchyard_elements::standard();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..3000 {
        let mut text: Vec<char> = base.chars().collect();
        for _ in 0..(next() % 6 + 1) {
            let at = (next() as usize) % (text.len() + 1);
            match next() % 3 {
                0 => {
                    let t = tokens[(next() as usize) % tokens.len()];
                    text.splice(at..at, t.chars());
                }
                1 if at < text.len() => {
                    text.remove(at);
                }
                _ if at < text.len() => text[at] = tokens[(next() as usize) % tokens.len()].chars().next().unwrap(),
                _ => {}
            }
        }
        let text: String = text.into_iter().collect();
        if let Err(e) = switchyard_core::load_text("m.click", &text, &registry, &[]) {
            assert!(e.starts_with("m.click:"), "unrendered error for:\n{text}\n---\n{e}");
        }
    }
}

// One config text must never crash or exhaust the checker: each of these
// used to abort the process (stack overflow, out of memory, a panic) or
// block it. Each is now a config error that names its limit.

#[test]
fn a_span_inside_a_multibyte_character_is_reported_not_a_panic() {
    // Found by fuzzing: the argument error's span ended inside 'é'.
    let e = errors("Watchdog(,\n//\néET);\n");
    assert!(e.starts_with("t.click:1:10: error: 'Watchdog@1 :: Watchdog'"), "{e}");
    for line in e.lines().filter(|l| l.contains(" | ")) {
        assert!(!line.contains('\u{fffd}'), "{e}");
    }
}

#[test]
fn thousands_of_nested_braces_and_parentheses_are_an_error() {
    for (open, close) in [("{", "}"), ("(", ")")] {
        let text = format!("Idle -> {}Counter{} -> Discard;", open.repeat(5000), close.repeat(5000));
        let h = headlines(&text);
        assert!(
            h.iter()
                .any(|l| l.contains("nested more than 64 deep (limit nesting=64")),
            "{h:?}"
        );
    }
    let text = format!(
        "{}Idle -> Discard;{}",
        "elementclass A { ".repeat(5000),
        "}".repeat(5000)
    );
    assert!(errors(&text).contains("limit nesting=64"));
}

#[test]
fn a_huge_port_count_is_refused_before_anything_is_allocated() {
    let h = headlines("Idle -> Tee(100000000) -> Discard;");
    assert_eq!(
        h,
        ["t.click:1:13: error: 'Tee@2 :: Tee' asks for 100000000 ports, more than 4096 (limit ports=4096; raise with --limit ports=N)"]
    );
    // A port number past the limit is refused where it is written.
    let h = headlines("s :: Switch; Idle -> s; s[100000000] -> Discard;");
    assert!(
        h.iter().any(|l| l.contains(
            "t.click:1:27: error: port 100000000 out of range: at most 4096 ports per element (limit ports=4096"
        )),
        "{h:?}"
    );
}

#[test]
fn a_chain_longer_than_the_thread_stack_allows_is_refused_and_one_at_the_limit_runs() {
    let chain = |n: usize| {
        format!(
            "src :: InfiniteSource(LIMIT 300, STOP true) -> {} -> last :: Counter -> Discard;",
            vec!["Counter"; n - 3].join(" -> ")
        )
    };
    let limit = switchyard_core::Limits::default().chain;
    let h = headlines(&chain(limit + 1));
    assert!(
        h.iter()
            .any(|l| l.contains(&format!("a call chain of {} elements", limit + 1)) && l.contains("limit chain=")),
        "{h:?}"
    );
    // At the limit, it runs: the router's threads have the stack for it
    // (in a debug build, the worst case).
    let handlers = switchyard_core::run_text(&chain(limit), &switchyard_elements::standard()).unwrap();
    assert_eq!(handlers.read("last.count").unwrap(), "300");
}

#[test]
fn libraries_must_be_small_regular_files_and_a_fifo_does_not_block() {
    let dir = std::env::temp_dir().join(format!("sy-lib-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo.click");
    let _ = std::fs::remove_file(&fifo);
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let big = dir.join("big.click");
    std::fs::write(&big, "// x\n".repeat(1 << 20)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let texts = [
        "require(library /dev/zero); Idle -> Discard;".to_string(),
        format!("require(library {}); Idle -> Discard;", fifo.display()),
        format!("require(library {}); Idle -> Discard;", big.display()),
        format!("require(library {}); Idle -> Discard;", dir.display()),
    ];
    std::thread::spawn(move || {
        for t in texts {
            tx.send(errors(&t)).unwrap();
        }
    });
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(
            rx.recv_timeout(std::time::Duration::from_secs(30))
                .expect("checking a library blocked"),
        );
    }
    assert!(got[0].contains("library '/dev/zero': not a regular file"), "{}", got[0]);
    assert!(got[1].contains("fifo.click': not a regular file"), "{}", got[1]);
    assert!(
        got[2].contains("larger than 4194304 bytes (limit library_bytes=4194304"),
        "{}",
        got[2]
    );
    assert!(got[3].contains("not a regular file"), "{}", got[3]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_compound_that_doubles_its_argument_is_stopped_by_the_byte_limit() {
    // A chain of classes, each doubling its argument for the one before
    // (a class cannot use itself, as in Click).
    let classes = common::doubling_classes();
    let text = format!("{classes}Idle -> D39(xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx) -> Discard;");
    let e = errors(&text);
    assert!(
        e.contains("more than 16777216 bytes (limit config_bytes=16777216"),
        "{e}"
    );
}

#[test]
fn arguments_cannot_buy_huge_allocations() {
    // The Queue's channel used to allocate a slot per packet of CAPACITY
    // up front: 4e9 of them abort the process.
    ok("InfiniteSource(LIMIT 1) -> Queue(4000000000) -> Unqueue -> Discard;");
    let h =
        headlines("Idle -> [0]c :: ShadowCompare(WINDOW 1000000000); Idle -> [1]c; c[0] -> Discard; c[1] -> Discard;");
    assert!(h.iter().any(|l| l.contains("WINDOW must be at most 1000000")), "{h:?}");
    let h = headlines("Idle -> SeqCheck(MAX 18446744073709551615) -> Discard;");
    assert!(h.iter().any(|l| l.contains("MAX must be at most 1073741824")), "{h:?}");
}

#[test]
fn a_huge_packet_length_is_refused_before_a_template_is_built() {
    // Found by fuzzing: the template was allocated before LENGTH was
    // checked, and 6455555555555 bytes aborted the process.
    let h = headlines("RatedSource(LENGTH 6455555555555) -> Discard;");
    assert!(
        h.iter()
            .any(|l| l.contains("LENGTH 6455555555555 too large (at most 65535)")),
        "{h:?}"
    );
}
