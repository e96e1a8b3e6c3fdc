//! docs/control.md's JSON Schema against the examples on that page and
//! against every message kind the implementation produces, both ways.
//!
//! The validator below implements only the keywords the schema uses
//! (`$ref` to `#/$defs/…`, `oneOf`, `enum`, `const`, `type`,
//! `properties`, `required`, `additionalProperties: false`, `items`,
//! `minimum`); any other keyword fails the test, so the schema cannot
//! grow a rule that is silently not checked.

use flowrun::control::protocol::*;
use serde_json::{json, Value};

const DOC: &str = include_str!("../../../docs/control.md");

fn schema() -> Value {
    let at = DOC.find("### JSON Schema").expect("schema heading");
    let rest = &DOC[at..];
    let start = rest.find("```json\n").expect("schema block") + "```json\n".len();
    let end = rest[start..].find("```").expect("end of schema block");
    serde_json::from_str(&rest[start..start + end]).expect("the schema is JSON")
}

fn check(root: &Value, s: &Value, v: &Value, path: &str) -> Result<(), String> {
    let obj = s
        .as_object()
        .ok_or(format!("{path}: schema is not an object"))?;
    for (k, rule) in obj {
        match k.as_str() {
            "$ref" => {
                let name = rule
                    .as_str()
                    .and_then(|r| r.strip_prefix("#/$defs/"))
                    .ok_or(format!("unsupported $ref {rule}"))?;
                check(root, &root["$defs"][name], v, path)?;
            }
            "oneOf" => {
                let n = rule
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|alt| check(root, alt, v, path).is_ok())
                    .count();
                if n != 1 {
                    return Err(format!("{path}: {n} alternatives of oneOf match {v}"));
                }
            }
            "enum" => {
                if !rule.as_array().unwrap().contains(v) {
                    return Err(format!("{path}: {v} not in {rule}"));
                }
            }
            "const" => {
                if rule != v {
                    return Err(format!("{path}: {v} is not {rule}"));
                }
            }
            "type" => {
                let ok = match rule.as_str().unwrap() {
                    "object" => v.is_object(),
                    "array" => v.is_array(),
                    "string" => v.is_string(),
                    "boolean" => v.is_boolean(),
                    "null" => v.is_null(),
                    "number" => v.is_number(),
                    "integer" => v.is_i64() || v.is_u64(),
                    t => return Err(format!("unsupported type {t}")),
                };
                if !ok {
                    return Err(format!("{path}: {v} is not of type {rule}"));
                }
            }
            "minimum" => {
                if v.as_f64().is_some_and(|x| x < rule.as_f64().unwrap()) {
                    return Err(format!("{path}: {v} < {rule}"));
                }
            }
            "properties" => {
                if let Some(o) = v.as_object() {
                    for (name, sub) in rule.as_object().unwrap() {
                        if let Some(x) = o.get(name) {
                            check(root, sub, x, &format!("{path}.{name}"))?;
                        }
                    }
                }
            }
            "required" => {
                if let Some(o) = v.as_object() {
                    for r in rule.as_array().unwrap() {
                        if !o.contains_key(r.as_str().unwrap()) {
                            return Err(format!("{path}: missing {r}"));
                        }
                    }
                }
            }
            "additionalProperties" => {
                assert_eq!(rule, &json!(false), "only `false` is supported");
                if let Some(o) = v.as_object() {
                    let known = obj.get("properties").and_then(Value::as_object);
                    for name in o.keys() {
                        if !known.is_some_and(|k| k.contains_key(name)) {
                            return Err(format!("{path}: unexpected field {name}"));
                        }
                    }
                }
            }
            "items" => {
                if let Some(a) = v.as_array() {
                    for (i, x) in a.iter().enumerate() {
                        check(root, rule, x, &format!("{path}[{i}]"))?;
                    }
                }
            }
            other => panic!("the test's validator does not support `{other}`"),
        }
    }
    Ok(())
}

fn valid(root: &Value, def: &str, line: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    check(root, &root["$defs"][def], &v, "$")
}

fn every_client_message() -> Vec<ClientMsg> {
    let t = || {
        vec![
            Target::parse("api.0").unwrap(),
            Target::parse("web").unwrap(),
        ]
    };
    let requests = vec![
        Request::Ps {},
        Request::Logs {
            targets: t(),
            tail: Some(5),
            since_ms: Some(1000),
            follow: true,
        },
        Request::Logs {
            targets: vec![],
            tail: None,
            since_ms: None,
            follow: false,
        },
        Request::Restart {
            targets: t(),
            rolling: true,
        },
        Request::Stop {
            groups: vec!["api".into()],
        },
        Request::Start {
            groups: vec!["api".into()],
        },
        Request::Scale {
            counts: vec![ScaleTo {
                group: "api".into(),
                count: 3,
            }],
        },
        Request::Signal {
            signal: "SIGHUP".into(),
            targets: t(),
        },
        Request::Reload {},
        Request::Down {},
        Request::Wait {
            ready: vec!["api".into()],
            timeout_ms: Some(100),
        },
        Request::Events { follow: true },
    ];
    let mut out = vec![
        ClientMsg::Hello {
            protocol: 1,
            client: None,
        },
        ClientMsg::Hello {
            protocol: 1,
            client: Some("x".into()),
        },
    ];
    out.extend(
        requests
            .into_iter()
            .enumerate()
            .map(|(i, request)| ClientMsg::Request {
                id: i as u64,
                request,
            }),
    );
    out
}

fn every_server_message() -> Vec<ServerMsg> {
    let process = |state, step, last_exit| ProcessStatus {
        group: "api".into(),
        index: 0,
        pid: Some(12),
        state,
        step,
        restarts: 1,
        attempt: 1,
        uptime_ms: None,
        last_exit,
        cpu_ms: Some(5),
    };
    let ps = PsReply {
        processes: vec![
            process(ProcState::Starting, None, None),
            process(ProcState::Ready, None, None),
            process(ProcState::Running, None, None),
            process(
                ProcState::BackingOff,
                None,
                Some(ExitStatus {
                    code: Some(1),
                    signal: None,
                }),
            ),
            process(
                ProcState::Stopping,
                Some(1),
                Some(ExitStatus {
                    code: None,
                    signal: Some("SIGKILL".into()),
                }),
            ),
            process(ProcState::Stopped, None, None),
            process(ProcState::Failed, None, None),
        ],
        groups: vec![GroupStatus {
            group: "api".into(),
            processes: 7,
            ready: 1,
            running: 1,
            stopped: 1,
            failed: 1,
            held: true,
        }],
    };
    let codes = [
        ErrorCode::BadRequest,
        ErrorCode::TooLarge,
        ErrorCode::Timeout,
        ErrorCode::VersionMismatch,
        ErrorCode::HandshakeRequired,
        ErrorCode::PermissionDenied,
        ErrorCode::UnknownGroup,
        ErrorCode::Refused,
        ErrorCode::Failed,
        ErrorCode::Unavailable,
        ErrorCode::Busy,
        ErrorCode::Internal,
    ];
    let mut out = vec![
        ServerMsg::Hello {
            protocol: 1,
            server: "flowrun".into(),
            topology: "/a.pf".into(),
            pid: 1,
        },
        ServerMsg::Reply {
            id: 1,
            reply: Reply::Ps(ps),
        },
        ServerMsg::Reply {
            id: 1,
            reply: Reply::Done {
                processes: vec!["api.0".into()],
            },
        },
        ServerMsg::Reply {
            id: 1,
            reply: Reply::Reloaded { changed: vec![] },
        },
        ServerMsg::Reply {
            id: 1,
            reply: Reply::Down { code: 130 },
        },
        ServerMsg::Reply {
            id: 1,
            reply: Reply::Ready {
                groups: vec!["api".into()],
            },
        },
        ServerMsg::Log {
            id: 1,
            process: "api.0".into(),
            seq: 3,
            t: 1.5,
            line: "x\"y".into(),
        },
        ServerMsg::Missed {
            id: 1,
            process: Some("api.0".into()),
            count: 9,
        },
        ServerMsg::Missed {
            id: 1,
            process: None,
            count: 9,
        },
        ServerMsg::Event {
            id: 1,
            event: json!({"event": "ready", "t": 0.5}),
        },
        ServerMsg::End { id: 1 },
    ];
    for (i, code) in codes.into_iter().enumerate() {
        out.push(ServerMsg::Error {
            id: (i % 2 == 0).then_some(i as u64),
            error: ControlError::new(code, "m").with_details(vec!["d".into()]),
        });
    }
    out
}

#[test]
fn the_schema_accepts_the_examples_on_its_page() {
    let root = schema();
    let mut n = 0;
    for line in DOC.lines() {
        let (def, json) = if let Some(j) = line.strip_prefix("→ ") {
            ("client", j)
        } else if let Some(j) = line.strip_prefix("← ") {
            ("server", j)
        } else {
            continue;
        };
        valid(&root, def, json).unwrap_or_else(|e| panic!("{line}: {e}"));
        // And the implementation reads them the same way.
        if def == "client" {
            serde_json::from_str::<ClientMsg>(json).unwrap();
        } else {
            serde_json::from_str::<ServerMsg>(json).unwrap();
        }
        n += 1;
    }
    assert!(n >= 9, "{n} examples found");
}

#[test]
fn the_schema_accepts_every_message_the_implementation_sends() {
    let root = schema();
    for m in every_client_message() {
        let line = serde_json::to_string(&m).unwrap();
        valid(&root, "client", &line).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    for m in every_server_message() {
        let line = serde_json::to_string(&m).unwrap();
        valid(&root, "server", &line).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
}

#[test]
fn the_schema_and_the_implementation_reject_the_same_bad_lines() {
    let root = schema();
    for bad in [
        r#"{"type":"request","id":1,"request":{"cmd":"rm"}}"#,
        r#"{"type":"request","id":1,"request":{"cmd":"ps","x":1}}"#,
        r#"{"type":"request","request":{"cmd":"ps"}}"#,
        r#"{"type":"request","id":-1,"request":{"cmd":"ps"}}"#,
        r#"{"type":"request","id":1,"request":{"cmd":"restart"}}"#,
        r#"{"type":"request","id":1,"request":{"cmd":"logs","targets":[{"index":1}]}}"#,
        r#"{"type":"hello"}"#,
        r#"{"type":"hello","protocol":1,"x":2}"#,
        r#"{"protocol":1}"#,
    ] {
        assert!(valid(&root, "client", bad).is_err(), "schema accepts {bad}");
        assert!(
            serde_json::from_str::<ClientMsg>(bad).is_err(),
            "implementation accepts {bad}"
        );
    }
}
