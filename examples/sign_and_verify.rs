//! Signs a body the way NotMeta does, verifies and parses it, answers a challenge,
//! and shows a forged body refused.
//!
//! Run with `cargo run --example sign_and_verify`.

use notmeta_webhooks::{EventKind, Verifier, sign};

fn main() -> Result<(), notmeta_webhooks::Error> {
    let secret = "whsec_abc123";
    let verifier = Verifier::new(secret)?;

    // 1. A message arrives: verify the raw bytes, then read the typed event.
    let body = br#"{"id":"evt_123456789","type":"message.received","created_at":"2024-01-01T12:00:00Z","data":{"message":{"id":"msg_123456789","conversation_id":"conv_123456789","from":"1234567890","to":"0987654321","type":"text","text":"Hola, necesito ayuda","timestamp":"2024-01-01T12:00:00Z"},"conversation":{"id":"conv_123456789","status":"open","assigned_to":null,"created_at":"2024-01-01T11:55:00Z"}}}"#;
    let header = sign(body, secret);
    println!("X-NotMeta-Signature: {header}");
    let event = verifier.verify(body, [&header])?.parse()?;
    if let EventKind::MessageReceived(m) = &event.kind {
        println!(
            "verified {} ({}): from {} says {:?}",
            event.id,
            event.type_str(),
            m.message.from.as_deref().unwrap_or("?"),
            m.message.text.as_deref().unwrap_or("")
        );
    }

    // 2. The verification challenge: answer 200 with the challenge as the body.
    let challenge = br#"{"id":"evt_verify_123","type":"webhook.verified","created_at":"2024-01-01T00:00:00Z","data":{"webhook_id":"wh_123456789","challenge":"challenge_string_123"}}"#;
    let event = verifier
        .verify(challenge, [&sign(challenge, secret)])?
        .parse()?;
    let answer = event
        .challenge_response()
        .expect("a webhook.verified event has a challenge");
    println!(
        "challenge answered: {} {:?}",
        answer.status().as_u16(),
        answer.body()
    );

    // 3. A forged body with a stolen signature: refused, answered 400, never parsed.
    let forged = String::from_utf8_lossy(body).replace("Hola", "Adiós");
    let err = verifier
        .verify(forged.as_bytes(), [&header])
        .and_then(|payload| payload.parse())
        .expect_err("a forged body must not verify");
    println!("forged body refused: {err} -> {}", err.status().as_u16());
    assert_eq!(err.status(), 400);
    Ok(())
}
