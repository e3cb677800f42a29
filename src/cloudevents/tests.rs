//! Unit tests of the CloudEvents bindings: each content mode read and
//! written back, one test per rule that refuses.

use super::binding::{decode_value, encode_value};
use super::*;
use crate::event::Event;
use serde_json::{json, Value};

fn props(meta: &EventMeta) -> Vec<(&str, &str)> {
    meta.user_properties
        .iter()
        .map(|(k, v)| (&**k, &**v))
        .collect()
}

fn binary_headers() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("CE-SpecVersion", b"1.0"),
        ("ce-type", b"com.example.someevent"),
        ("ce-id", b"1234"),
        ("ce-source", b"/my%2Fcontext"),
        ("ce-time", b"2018-04-05T03:56:24Z"),
        ("ce-subject", b"\"quoted \\\"s\\\"\""),
        (
            "ce-traceparent",
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("ce-comexampleext", b"Euro%20%E2%82%AC"),
        ("Content-Type", b"application/json; charset=utf-8"),
        ("X-Other", b"kept out"),
    ]
}

fn one(headers: &[(&str, &[u8])], body: &[u8]) -> Incoming {
    let mut events = from_http(headers, body).unwrap();
    assert_eq!(events.len(), 1);
    events.pop().unwrap()
}

#[test]
fn binary_mode_reads_into_mqtt5_form() {
    let e = one(&binary_headers(), b"{\"a\":1}");
    let meta = e.meta.unwrap();
    assert_eq!(e.payload, b"{\"a\":1}");
    assert_eq!(
        meta.content_type.as_deref(),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        props(&meta),
        [
            ("specversion", "1.0"),
            ("id", "1234"),
            ("source", "/my/context"),
            ("type", "com.example.someevent"),
            ("time", "2018-04-05T03:56:24Z"),
            ("subject", "quoted \"s\""),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            ),
            ("comexampleext", "Euro €"),
        ]
    );
}

#[test]
fn plain_body_keeps_its_content_type() {
    let e = one(&[("content-type", b"text/plain")], b"hello");
    assert_eq!(e.payload, b"hello");
    assert_eq!(e.meta.unwrap().content_type.as_deref(), Some("text/plain"));
    let e = one(&[], b"raw");
    assert_eq!((e.payload.as_slice(), e.meta), (&b"raw"[..], None));
}

#[test]
fn structured_mode_reads_attributes_and_data() {
    let body = json!({
        "specversion": "1.0", "type": "t", "source": "/s", "id": "1",
        "time": "2018-04-05T17:31:00.123+02:00", "subject": null,
        "comexampleothervalue": 5, "flag": true,
        "datacontenttype": "application/json", "data": {"x": [1, 2]}
    });
    let e = one(
        &[(
            "Content-Type",
            b"application/cloudevents+json; charset=UTF-8",
        )],
        body.to_string().as_bytes(),
    );
    let meta = e.meta.unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&e.payload).unwrap(),
        json!({"x": [1, 2]})
    );
    assert_eq!(meta.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        props(&meta),
        [
            ("specversion", "1.0"),
            ("id", "1"),
            ("source", "/s"),
            ("type", "t"),
            ("comexampleothervalue", "5"),
            ("flag", "true"),
            ("time", "2018-04-05T17:31:00.123+02:00"),
        ]
    );
}

#[test]
fn structured_data_by_content_type() {
    let base = || json!({"specversion": "1.0", "type": "t", "source": "/s", "id": "1"});
    let read = |extra: Value| {
        let mut v = base();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        one(
            &[("content-type", b"application/cloudevents+json")],
            v.to_string().as_bytes(),
        )
    };
    // No datacontenttype: JSON implied and set explicitly (JSON format 3.1.2).
    let e = read(json!({"data": "I'm just a string"}));
    assert_eq!(e.payload, b"\"I'm just a string\"");
    assert_eq!(
        e.meta.unwrap().content_type.as_deref(),
        Some("application/json")
    );
    let e = read(json!({"datacontenttype": "application/xml", "data": "<a/>"}));
    assert_eq!(e.payload, b"<a/>");
    let e = read(json!({"datacontenttype": "application/octet-stream", "data_base64": "AAEC/w=="}));
    assert_eq!(e.payload, [0, 1, 2, 255]);
    let e = read(json!({}));
    assert!(e.payload.is_empty());
    assert_eq!(e.meta.unwrap().content_type, None);
}

#[test]
fn batch_reads_every_event() {
    let body = json!([
        {"specversion": "1.0", "type": "a", "source": "/s", "id": "1", "data": 1},
        {"specversion": "1.0", "type": "b", "source": "/s", "id": "2",
         "datacontenttype": "text/plain", "data": "two"}
    ]);
    let events = from_http(
        &[("Content-Type", b"application/cloudevents-batch+json")],
        body.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].payload, b"1");
    assert_eq!(events[1].payload, b"two");
    assert_eq!(props(events[1].meta.as_ref().unwrap())[3], ("type", "b"));
}

fn second_meta(incoming: &Incoming) -> &EventMeta {
    incoming.meta.as_ref().unwrap()
}

fn error(headers: &[(&str, &[u8])], body: &[u8]) -> CeError {
    from_http(headers, body).unwrap_err()
}

const STRUCTURED: (&str, &[u8]) = ("content-type", b"application/cloudevents+json");
const BATCH: (&str, &[u8]) = ("content-type", b"application/cloudevents-batch+json");

#[test]
fn errors_per_rule_with_status() {
    let cases: Vec<(CeError, u16)> = vec![
        (
            error(&[("content-type", b"application/cloudevents+avro")], b"x"),
            415,
        ),
        (error(&[STRUCTURED], b"{\"id\": "), 400),
        (error(&[STRUCTURED], b"[1]"), 400),
        (error(&[BATCH], b"{}"), 400),
        (error(&[BATCH], b"[]"), 422),
        (
            error(
                &[STRUCTURED],
                br#"{"specversion":"1.0","type":"t","source":"/s"}"#,
            ),
            422,
        ),
        (
            error(
                &[STRUCTURED],
                br#"{"specversion":"0.3","type":"t","source":"/s","id":"1"}"#,
            ),
            422,
        ),
        (
            error(
                &[STRUCTURED],
                br#"{"specversion":"1.0","type":"t","source":"/s","id":7}"#,
            ),
            422,
        ),
        (
            error(
                &[STRUCTURED],
                br#"{"specversion":"1.0","type":"t","source":"/s","id":"1","Bad-Name":"x"}"#,
            ),
            422,
        ),
        (
            error(
                &[STRUCTURED],
                br#"{"specversion":"1.0","type":"t","source":"/s","id":"1","data":1,"data_base64":"AA=="}"#,
            ),
            400,
        ),
        (
            error(
                &[STRUCTURED],
                br#"{"specversion":"1.0","type":"t","source":"/s","id":"1","data_base64":"!!"}"#,
            ),
            400,
        ),
        (
            error(
                &[STRUCTURED],
                br#"{"specversion":"1.0","type":"t","source":"/s","id":"1","time":"yesterday"}"#,
            ),
            422,
        ),
        (
            error(
                &[STRUCTURED],
                br#"{"specversion":"1.0","type":"t","source":"/s","id":"1","ext":1.5}"#,
            ),
            422,
        ),
        (
            error(
                &[STRUCTURED],
                br#"{"specversion":"1.0","type":"t","source":"/s","id":"1","datacontenttype":"text/plain","data":{}}"#,
            ),
            422,
        ),
        (
            error(
                &[("ce-specversion", b"1.0"), ("ce-id", b"1"), ("ce-source", b"/s")],
                b"",
            ),
            422,
        ),
        (
            error(
                &[
                    ("ce-specversion", b"1.0"),
                    ("ce-id", b"1"),
                    ("ce-source", b"/s"),
                    ("ce-type", b"t"),
                    ("ce-datacontenttype", b"text/plain"),
                ],
                b"",
            ),
            400,
        ),
        (error(&[("ce-id", b"%C0%A0")], b""), 400),
        (error(&[("ce-id", b"%zz")], b""), 400),
        (error(&[("ce-id", b"1"), ("CE-ID", b"2")], b""), 400),
        (error(&[("ce-my_ext", b"1")], b""), 422),
    ];
    for (i, (err, status)) in cases.iter().enumerate() {
        assert_eq!(err.status(), *status, "case {i}: {err}");
        assert!(!err.to_string().is_empty());
    }
    assert_eq!(cases[5].0, CeError::MissingAttribute("id"));
    assert_eq!(cases[6].0, CeError::BadSpecVersion("0.3".into()));
    assert!(matches!(&cases[1].0, CeError::BadJson(m) if m.contains("EOF")));
    assert_eq!(cases[14].0, CeError::MissingAttribute("type"));
    let in_batch = error(
        &[BATCH],
        br#"[{"specversion":"1.0","type":"t","source":"/s"}]"#,
    );
    assert_eq!(
        in_batch.to_string(),
        "batch element 0: missing required attribute \"id\""
    );
    assert_eq!(in_batch.status(), 422);
}

#[test]
fn percent_encoding_follows_the_http_binding() {
    // HTTP binding 3.1.3.2's example.
    assert_eq!(
        encode_value("Euro \u{20ac} \u{1f600}"),
        "Euro%20%E2%82%AC%20%F0%9F%98%80"
    );
    assert_eq!(encode_value("a\"b%c"), "a%22b%25c");
    assert_eq!(
        decode_value(b"Euro%20%e2%82%ac%20%F0%9F%98%80").unwrap(),
        "Euro \u{20ac} \u{1f600}"
    );
    assert_eq!(decode_value(b"%41bc").unwrap(), "Abc");
    assert!(decode_value(b"%C0%A0").is_err());
    assert!(decode_value(b"\"open").is_err());
}

#[test]
fn timestamps() {
    for ok in [
        "2018-04-05T17:31:00Z",
        "2018-04-05t17:31:00.5z",
        "1985-04-12T23:20:50.52-08:00",
    ] {
        assert!(rfc3339(ok), "{ok}");
    }
    for bad in [
        "2018-04-05",
        "2018-13-05T17:31:00Z",
        "2018-04-05T17:31:00",
        "2018-04-05T17:31:00.Z",
        "2018-04-05T17:31:00+0200",
    ] {
        assert!(!rfc3339(bad), "{bad}");
    }
}

fn event_from(incoming: Incoming) -> Event {
    Event::new("t", &incoming.payload, 0, false).with_meta(incoming.meta.unwrap_or_default())
}

/// HTTP binary → weft's form → structured JSON → HTTP structured → the
/// same form: nothing lost, nothing added.
#[test]
fn structured_json_round_trips() {
    let first = one(&binary_headers(), b"{\"a\":1}");
    let event = event_from(first);
    let rendered = structured_json(&event).unwrap();
    let value: Value = serde_json::from_slice(&rendered).unwrap();
    assert_eq!(value["data"], json!({"a": 1}));
    assert_eq!(value["comexampleext"], "Euro €");
    assert_eq!(value["datacontenttype"], "application/json; charset=utf-8");
    let read_back = one(&[STRUCTURED], &rendered);
    assert_eq!(read_back.payload, b"{\"a\":1}");
    let (first, second) = (event.meta.as_deref().unwrap(), second_meta(&read_back));
    assert_eq!(first.content_type, second.content_type);
    // The order of attributes carries no meaning (JSON members are sorted).
    let sorted = |m: &EventMeta| {
        let mut p: Vec<(String, String)> = props(m)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        p.sort();
        p
    };
    assert_eq!(sorted(first), sorted(second));
    assert_eq!(props(second)[..4], props(first)[..4], "required first");
}

#[test]
fn structured_json_data_forms() {
    let make = |ct: Option<&str>, payload: &[u8]| {
        let mut meta = EventMeta::default();
        for (k, v) in [
            ("specversion", "1.0"),
            ("id", "1"),
            ("source", "/s"),
            ("type", "t"),
        ] {
            meta.user_properties.push((k.into(), v.into()));
        }
        meta.content_type = ct.map(Into::into);
        let json = structured_json(&Event::new("t", payload, 0, false).with_meta(meta)).unwrap();
        serde_json::from_slice::<Value>(&json).unwrap()
    };
    assert_eq!(make(Some("text/plain"), b"hi")["data"], "hi");
    assert_eq!(make(Some("application/json"), b"[1]")["data"], json!([1]));
    // Declared JSON but not JSON: the bytes exactly, as base64.
    assert_eq!(make(Some("application/json"), b"hi")["data_base64"], "aGk=");
    assert_eq!(make(None, b"\xff")["data_base64"], "/w==");
    assert_eq!(make(Some("text/plain"), b"\xff")["data_base64"], "/w==");
    assert!(make(None, b"").get("data").is_none());
    // Not a CloudEvent: None; structured: the payload as it is.
    assert_eq!(structured_json(&Event::new("t", b"x", 0, false)), None);
    let structured = Event::new("t", b"{}", 0, false).with_meta(EventMeta {
        content_type: Some("application/cloudevents+json".into()),
        ..Default::default()
    });
    assert_eq!(structured_json(&structured).unwrap(), b"{}");
}

/// weft's form → NATS binary headers → MQTT 5 form: the same attributes,
/// and the NATS block is the draft binding's (`ce-` names, encoded values).
#[test]
fn nats_headers_round_trip() {
    let incoming = one(&binary_headers(), b"{}");
    let meta = incoming.meta.unwrap();
    let block = nats_headers(&meta).unwrap();
    let text = String::from_utf8(block.clone()).unwrap();
    assert!(
        text.starts_with("NATS/1.0\r\n") && text.ends_with("\r\n\r\n"),
        "{text}"
    );
    assert!(text.contains("ce-source: /my/context\r\n"), "{text}");
    assert!(
        text.contains("ce-comexampleext: Euro%20%E2%82%AC\r\n"),
        "{text}"
    );
    assert!(
        text.contains("ce-datacontenttype: application/json;%20charset=utf-8\r\n"),
        "{text}"
    );
    // The tracing extension and, beside it, the W3C header (`trace`).
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    assert!(
        text.contains(&format!("ce-traceparent: {tp}\r\ntraceparent: {tp}\r\n")),
        "{text}"
    );
    let mqtt5 = mqtt5_from_nats_headers(&block).unwrap();
    assert_eq!(
        mqtt5.content_type,
        meta.content_type.as_deref().map(String::from)
    );
    let back: Vec<(&str, &str)> = mqtt5
        .user_properties
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(back, props(&meta));
    // Not a CloudEvent: the callers keep their mapping.
    assert_eq!(
        mqtt5_from_nats_headers(b"NATS/1.0\r\nce-id: 1\r\n\r\n"),
        None
    );
    let plain = EventMeta {
        user_properties: vec![("k".into(), "v".into())],
        ..Default::default()
    };
    assert_eq!(nats_headers(&plain), None);
    // A structured event's content type goes as a header line: never one
    // that would end the line early.
    let injected = EventMeta {
        content_type: Some("application/cloudevents+json\r\nX-Injected: 1".into()),
        ..Default::default()
    };
    assert_eq!(nats_headers(&injected), None);
    let structured = EventMeta {
        content_type: Some("application/cloudevents+json".into()),
        ..Default::default()
    };
    assert_eq!(
        nats_headers(&structured).unwrap(),
        b"NATS/1.0\r\nContent-Type: application/cloudevents+json\r\n\r\n"
    );
    // Nor a user property that would add a line or split a name.
    let props = EventMeta {
        content_type: Some("application/cloudevents+json".into()),
        user_properties: vec![
            ("k".into(), "v\r\nX-Injected: 1".into()),
            ("a:b".into(), "c".into()),
            ("ok".into(), "yes".into()),
        ],
        ..Default::default()
    };
    assert_eq!(
        nats_headers(&props).unwrap(),
        b"NATS/1.0\r\nContent-Type: application/cloudevents+json\r\nok: yes\r\n\r\n"
    );
}

#[test]
fn binary_events_become_structured_for_mqtt3() {
    let event = event_from(one(&binary_headers(), b"{\"a\":1}"));
    let json = structured_for_v3(&event).unwrap();
    assert_eq!(json, structured_json(&event).unwrap());
    let nats = Event::new("t", b"x", 0, false).with_meta(EventMeta {
        headers: Some(
            b"NATS/1.0\r\nce-specversion: 1.0\r\nce-id: 9\r\nce-source: /n\r\nce-type: t\r\nce-datacontenttype: text/plain\r\n\r\n"
                .to_vec()
                .into(),
        ),
        ..Default::default()
    });
    let value: Value = serde_json::from_slice(&structured_for_v3(&nats).unwrap()).unwrap();
    assert_eq!(
        value,
        json!({"specversion": "1.0", "id": "9", "source": "/n", "type": "t",
               "datacontenttype": "text/plain", "data": "x"})
    );
    assert_eq!(structured_for_v3(&Event::new("t", b"x", 0, false)), None);
}

/// A NATS publisher's CloudEvent with a W3C `traceparent` header beside
/// `ce-traceparent`: an MQTT 5 subscriber gets one `traceparent` user
/// property, the extension's (the starting trace).
#[test]
fn extension_traceparent_wins_in_mqtt5() {
    let block = b"NATS/1.0\r\nce-specversion: 1.0\r\nce-id: 1\r\nce-source: /s\r\nce-type: t\r\n\
ce-traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\
traceparent: 00-0af7651916cd43dd8448eb211c80319c-00000000000000aa-01\r\n\r\n";
    let mqtt5 = mqtt5_from_nats_headers(block).unwrap();
    let tps: Vec<&str> = mqtt5
        .user_properties
        .iter()
        .filter(|(k, _)| k == "traceparent")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        tps,
        ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]
    );
}
