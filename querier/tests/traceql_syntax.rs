#![allow(clippy::unwrap_used)]

//! TraceQL syntax checked against Grafana's own grammar.
//!
//! `traceql-oracle/corpus.jsonl` lists queries and whether they are valid
//! TraceQL. Strata's parser must agree with every verdict, and so must the
//! `@grafana/lezer-traceql` parser Grafana's editor uses (run through node,
//! `traceql-oracle/oracle.mjs`) — except where an entry names a known
//! difference between lezer and Tempo's grammar (`lezer_differs`), which
//! must then really differ, so the list stays honest.
//!
//! Needs node and `npm ci` in `querier/tests/traceql-oracle`
//! (`scripts/test.sh` does both).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

#[derive(Debug, serde::Deserialize)]
struct Entry {
    q: String,
    valid: bool,
    lezer_differs: Option<String>,
}

fn corpus(dir: &Path) -> Vec<Entry> {
    std::fs::read_to_string(dir.join("corpus.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn lezer_verdicts(dir: &Path, queries: &[&str]) -> Vec<bool> {
    assert!(
        dir.join("node_modules/@grafana/lezer-traceql").exists(),
        "run `npm ci` in {} (scripts/test.sh does)",
        dir.display()
    );
    let mut child = Command::new("node")
        .arg("oracle.mjs")
        .arg("--no-template-vars")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node is needed for the TraceQL syntax oracle");
    let mut input = String::new();
    for q in queries {
        input.push_str(&serde_json::to_string(q).unwrap());
        input.push('\n');
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "oracle failed");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["ok"]
                .as_bool()
                .unwrap()
        })
        .collect()
}

#[test]
fn parser_agrees_with_the_corpus_and_with_grafanas_grammar() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/traceql-oracle");
    let entries = corpus(&dir);
    assert!(entries.len() >= 150, "{} entries", entries.len());
    let queries: Vec<&str> = entries.iter().map(|e| e.q.as_str()).collect();
    let lezer = lezer_verdicts(&dir, &queries);
    assert_eq!(lezer.len(), entries.len());
    let mut failures = Vec::new();
    for (entry, lezer_ok) in entries.iter().zip(lezer) {
        let strata = strata_querier::traceql::parse(&entry.q);
        if strata.is_ok() != entry.valid {
            failures.push(format!(
                "strata {} {:?} ({:?})",
                if entry.valid {
                    "rejects valid"
                } else {
                    "accepts invalid"
                },
                entry.q,
                strata.err().map(|e| e.to_string())
            ));
        }
        match (&entry.lezer_differs, lezer_ok == entry.valid) {
            (None, false) => failures.push(format!(
                "lezer {} {:?}: a new difference between the grammars?",
                if lezer_ok { "accepts" } else { "rejects" },
                entry.q
            )),
            (Some(reason), true) => failures.push(format!(
                "lezer now agrees on {:?}: drop `lezer_differs: {reason}`",
                entry.q
            )),
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
