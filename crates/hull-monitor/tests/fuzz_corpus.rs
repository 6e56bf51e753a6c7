//! Replays the corpus of the `control_json` fuzz target (`fuzz/corpus/control_json/`, see
//! README "Fuzzing") through the same function the target runs, and checks the bounds of the
//! control socket's request line.

use hull_monitor::control::fuzzing::control;
use hull_monitor::control::{parse_request, CtlRequest, RequestLine, MAX_REQUEST_LEN};

#[test]
fn control_json_corpus_replays() {
    let files = hull_testkit::fuzz_corpus("control_json");
    let mut parsed = 0;
    for (path, bytes) in &files {
        match std::panic::catch_unwind(|| control(bytes)) {
            Err(_) => panic!("fuzz corpus file {} panics", path.display()),
            Ok(Some(_)) => parsed += 1,
            Ok(None) => {}
        }
    }
    eprintln!(
        "{} control_json corpus files, {parsed} requests",
        files.len()
    );
}

#[test]
fn a_request_line_without_newline_is_refused_at_the_limit() {
    let mut line = RequestLine::default();
    let chunk = vec![b' '; 64 * 1024];
    let mut refused = false;
    for _ in 0..(MAX_REQUEST_LEN / chunk.len() + 2) {
        match line.push(&chunk) {
            Ok(false) => assert!(line.bytes().len() <= MAX_REQUEST_LEN),
            Ok(true) => panic!("no newline was sent"),
            Err(e) => {
                assert!(e.contains(&MAX_REQUEST_LEN.to_string()), "{e}");
                refused = true;
                break;
            }
        }
    }
    assert!(refused, "{} bytes accepted", line.bytes().len());
}

#[test]
fn a_request_line_sent_bytewise_completes_at_its_newline() {
    let sent = b"{\"op\":\"kill\",\"signal\":15,\"all\":false}\n";
    let mut line = RequestLine::default();
    let mut done = false;
    for b in sent.chunks(1) {
        done = line.push(b).unwrap();
    }
    assert!(done);
    assert!(matches!(
        parse_request(line.bytes()).unwrap(),
        CtlRequest::Kill {
            signal: 15,
            all: false
        }
    ));
}

#[test]
fn malformed_requests_are_errors_not_panics() {
    let deep = format!(
        "{}\n",
        "{\"op\":\"member\",\"id\":\"x\",\"request\":".repeat(10_000)
    );
    for junk in [
        &b"\n"[..],
        b"{\n",
        b"null\n",
        b"{\"op\":\"kill\",\"signal\":15,\"all\":false}\n{\"op\":\"start\"}\n",
        b"{\"op\":\"resize\",\"exec_id\":-1,\"rows\":70000,\"cols\":1}\n",
        deep.as_bytes(),
    ] {
        assert!(
            parse_request(junk).is_err(),
            "{}",
            String::from_utf8_lossy(junk)
        );
    }
}
