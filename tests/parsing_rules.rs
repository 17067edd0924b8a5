//! The envelope and payload rules of SPEC §3–4: strict where documented, lenient
//! where inferred, and never an error for what NotMeta may add later.

use notmeta_webhooks::event::{ConversationStatus, MessageType, UserRole};
use notmeta_webhooks::{ErrorKind, Event, EventKind};

fn body(event_type: &str, data: &str) -> String {
    format!(
        r#"{{"id":"evt_1","type":"{event_type}","created_at":"2024-01-01T12:00:00Z","data":{data}}}"#
    )
}

#[test]
fn unknown_event_type_is_kept_with_raw_data() {
    let b = body(
        "call.started",
        r#"{"call":{"id":"call_1","duration":[1,2]}}"#,
    );
    let event = Event::parse_unverified(b.as_bytes()).unwrap();
    assert_eq!(event.event_type(), None);
    assert_eq!(event.type_str(), "call.started");
    let EventKind::Unknown { event_type, data } = &event.kind else {
        panic!()
    };
    assert_eq!(event_type, "call.started");
    assert_eq!(data.get(), r#"{"call":{"id":"call_1","duration":[1,2]}}"#);
    // Any JSON value is accepted as the data of an unknown type.
    let b = body("call.started", "null");
    assert!(Event::parse_unverified(b.as_bytes()).is_ok());
}

#[test]
fn type_after_data_parses_the_same() {
    let first = body(
        "message.received",
        r#"{"message":{"id":"msg_1"},"conversation":{"id":"conv_1"}}"#,
    );
    let last = r#"{"data":{"message":{"id":"msg_1"},"conversation":{"id":"conv_1"}},"id":"evt_1","created_at":"2024-01-01T12:00:00Z","type":"message.received"}"#;
    let a = Event::parse_unverified(first.as_bytes()).unwrap();
    let b = Event::parse_unverified(last.as_bytes()).unwrap();
    assert_eq!(a.kind, b.kind);
    assert_eq!(a.id, b.id);
    // And a documented payload missing its object is still refused in that order.
    let bad = r#"{"data":{"conversation":{"id":"conv_1"}},"id":"evt_1","created_at":"2024-01-01T12:00:00Z","type":"message.received"}"#;
    assert_eq!(
        Event::parse_unverified(bad.as_bytes()).unwrap_err().kind(),
        ErrorKind::InvalidEvent
    );
}

#[test]
fn envelope_fields_are_required() {
    let cases = [
        r#"{"type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#,
        r#"{"id":"evt_1","created_at":"2024-01-01T12:00:00Z","data":{}}"#,
        r#"{"id":"evt_1","type":"user.online","data":{}}"#,
        r#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z"}"#,
        r#"{"id":"evt_1","type":"user.online","created_at":"yesterday","data":{}}"#,
        r#"{"id":7,"type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#,
        r#"{"id":"evt_1","id":"evt_2","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#,
        r#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":null}"#,
        r#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}} trailing"#,
        r#"[1,2,3]"#,
        "",
        "not json",
    ];
    for c in cases {
        let err = Event::parse_unverified(c.as_bytes()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidEvent, "{c}");
        assert_eq!(err.status(), 400);
    }
}

#[test]
fn created_at_accepts_fractions_and_offsets() {
    for (ts, unix) in [
        ("2024-01-01T12:00:00Z", 1_704_110_400),
        ("2024-01-01T12:00:00.123456Z", 1_704_110_400),
        ("2024-01-01T14:00:00+02:00", 1_704_110_400),
        ("2024-01-01T06:30:00.5-05:30", 1_704_110_400),
    ] {
        let b = format!(r#"{{"id":"evt_1","type":"user.online","created_at":"{ts}","data":{{}}}}"#);
        let event = Event::parse_unverified(b.as_bytes()).unwrap();
        assert_eq!(event.created_at.unix_timestamp(), unix, "{ts}");
    }
}

#[test]
fn documented_objects_are_required() {
    for (t, data, path) in [
        ("message.received", r#"{"conversation":{"id":"c"}}"#, "data"),
        ("message.received", r#"{"message":{"id":"m"}}"#, "data"),
        (
            "message.received",
            r#"{"message":"text","conversation":{}}"#,
            "data.message",
        ),
        (
            "conversation.assigned",
            r#"{"conversation":{"id":"c"}}"#,
            "data",
        ),
        ("webhook.verified", r#"{"webhook_id":"wh_1"}"#, "data"),
        (
            "webhook.verified",
            r#"{"webhook_id":"wh_1","challenge":42}"#,
            "data.challenge",
        ),
    ] {
        let b = body(t, data);
        let err = Event::parse_unverified(b.as_bytes()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidEvent, "{t} {data}");
        assert_eq!(err.json_path(), Some(path), "{t} {data}: {err}");
    }
}

#[test]
fn inferred_payloads_are_lenient() {
    // Every object absent.
    for t in [
        "conversation.created",
        "message.sent",
        "message.failed",
        "user.online",
        "webhook.failed",
    ] {
        let b = body(t, "{}");
        let event = Event::parse_unverified(b.as_bytes()).unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(event.type_str(), t);
    }
    // Fields of unexpected types become unavailable; the rest is kept.
    let b = body(
        "message.failed",
        r#"{"message":{"id":"msg_1","from":null,"to":{"x":1},"type":["text"],"text":"hi","timestamp":"later"},
            "error":{"code":470,"message":true}}"#,
    );
    let event = Event::parse_unverified(b.as_bytes()).unwrap();
    let EventKind::MessageFailed(p) = &event.kind else {
        panic!()
    };
    let m = p.message.as_ref().unwrap();
    assert_eq!(m.id.as_deref(), Some("msg_1"));
    assert_eq!(
        (m.from.as_deref(), m.to.as_deref(), m.kind.as_ref()),
        (None, None, None)
    );
    assert_eq!(m.text.as_deref(), Some("hi"));
    assert_eq!(m.timestamp, None);
    let e = p.error.as_ref().unwrap();
    assert_eq!(e.code.as_deref(), Some("470"));
    assert_eq!(e.message.as_deref(), Some("true"));

    // An object of the wrong JSON type is unavailable, not an error.
    let b = body("user.updated", r#"{"user":"user_1"}"#);
    let event = Event::parse_unverified(b.as_bytes()).unwrap();
    let EventKind::UserUpdated(p) = &event.kind else {
        panic!()
    };
    assert!(p.user.is_none());
}

#[test]
fn unknown_values_and_extra_fields_are_kept() {
    let b = r#"{"id":"evt_1","type":"message.received","created_at":"2024-01-01T12:00:00Z","api_version":"v2",
        "data":{"message":{"id":"msg_1","type":"sticker","sticker_id":"st_9"},
                "conversation":{"id":"conv_1","status":"snoozed","channel":"whatsapp"},
                "user":{"role":"owner"}}}"#;
    let event = Event::parse_unverified(b.as_bytes()).unwrap();
    let EventKind::MessageReceived(p) = &event.kind else {
        panic!()
    };
    assert_eq!(p.message.kind, Some(MessageType::Other("sticker".into())));
    assert_eq!(
        p.conversation.status,
        Some(ConversationStatus::Other("snoozed".into()))
    );

    #[derive(serde::Deserialize)]
    struct Extra<'a> {
        #[serde(borrow)]
        message: Sticker<'a>,
        #[serde(borrow)]
        conversation: Channel<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Sticker<'a> {
        sticker_id: &'a str,
    }
    #[derive(serde::Deserialize)]
    struct Channel<'a> {
        channel: &'a str,
    }
    let extra: Extra = event.data_as().unwrap();
    assert_eq!(extra.message.sticker_id, "st_9");
    assert_eq!(extra.conversation.channel, "whatsapp");
    assert_eq!(UserRole::from("owner").as_str(), "owner");
}

#[test]
fn escaped_strings_are_decoded() {
    let b = body(
        "message.received",
        r#"{"message":{"id":"msg_1","text":"caf\u00e9 \"ok\"\n"},"conversation":{"id":"conv_1"}}"#,
    );
    let event = Event::parse_unverified(b.as_bytes()).unwrap();
    let EventKind::MessageReceived(p) = &event.kind else {
        panic!()
    };
    assert_eq!(p.message.text.as_deref(), Some("café \"ok\"\n"));
    let owned = event.clone().into_owned();
    assert_eq!(owned, event);
}

#[test]
fn non_ascii_text_is_borrowed_and_invalid_utf8_is_an_error_with_its_path() {
    let b = body(
        "message.received",
        r#"{"message":{"id":"msg_1","text":"¿Hola? Ça va 😀"},"conversation":{"id":"conv_1"}}"#,
    );
    let event = Event::parse_unverified(b.as_bytes()).unwrap();
    let EventKind::MessageReceived(p) = &event.kind else {
        panic!()
    };
    assert!(matches!(
        p.message.text,
        Some(std::borrow::Cow::Borrowed("¿Hola? Ça va 😀"))
    ));

    let mut bad = b.into_bytes();
    let at = bad.iter().position(|&c| c == b'\xc2').unwrap(); // the `¿`
    bad[at] = 0xff;
    let err = Event::parse_unverified(&bad).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidEvent);
    assert_eq!(err.json_path(), Some("data.message.text"));
}

#[test]
fn deeply_nested_json_is_an_error_not_a_crash() {
    for depth in [200, 100_000] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        // Where the crate parses the value, nesting is an error.
        let err = Event::parse_unverified(nested.as_bytes()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidEvent, "depth {depth}");
        // The raw data of an unknown type is skipped iteratively and kept; turning it
        // into a tree is where serde_json's recursion limit (128) answers.
        let b = body("call.started", &format!(r#"{{"x":{nested}}}"#));
        let event = Event::parse_unverified(b.as_bytes()).unwrap();
        let EventKind::Unknown { data, .. } = &event.kind else {
            panic!()
        };
        assert!(data.deserialize::<serde_json::Value>().is_err());
        // Where a field of the wrong type is skipped, the skip is iterative (no stack
        // growth) and the field is simply unavailable.
        let b = body("user.online", &format!(r#"{{"user":{nested}}}"#));
        let event = Event::parse_unverified(b.as_bytes()).unwrap();
        let EventKind::UserOnline(p) = &event.kind else {
            panic!()
        };
        assert!(p.user.is_none());
    }
}

#[test]
fn event_type_round_trips_through_serde() {
    for t in notmeta_webhooks::EventType::ALL {
        let json = serde_json::to_string(t).unwrap();
        assert_eq!(json, format!("\"{}\"", t.as_str()));
        let back: notmeta_webhooks::EventType = serde_json::from_str(&json).unwrap();
        assert_eq!(back, *t);
        assert_eq!(
            t.as_str().parse::<notmeta_webhooks::EventType>().unwrap(),
            *t
        );
        assert_eq!(t.to_string(), t.as_str());
    }
    assert!(serde_json::from_str::<notmeta_webhooks::EventType>("\"call.started\"").is_err());
}
