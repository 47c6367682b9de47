//! Connecting securely: TLS with a private CA, and SASL/SCRAM, set in code and, the
//! same, with Kafka's property names.
//!
//! ```text
//! cargo run -p josefine --example tls_sasl -- TLS_BOOTSTRAP CA_PEM SASL_BOOTSTRAP USER PASSWORD
//! ```
//!
//! `TLS_BOOTSTRAP` is a listener with `security.protocol=SSL` whose certificate the CA
//! in `CA_PEM` signed; `SASL_BOOTSTRAP` one with `SASL_PLAINTEXT` and SCRAM-SHA-256
//! (over TLS in production: `SASL_SSL`, both settings together). Each client lists the
//! cluster's topics. A wrong password fails with an `Authentication` error that says so.

use josefine::{Client, Config, Credentials, ErrorKind, SaslConfig, TlsConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [tls_bootstrap, ca, sasl_bootstrap, user, password] = &args[..] else {
        return Err("usage: tls_sasl TLS_BOOTSTRAP CA_PEM SASL_BOOTSTRAP USER PASSWORD".into());
    };

    // TLS: the broker's certificate checked against our CA, hostname included.
    let tls = Client::builder()
        .bootstrap([tls_bootstrap.as_str()])
        .tls(TlsConfig::new().ca_location(ca))
        .connect()
        .await?;
    println!(
        "over TLS: {} topics",
        tls.admin().list_topics().await?.len()
    );

    // SASL/SCRAM: the password never leaves the client.
    let sasl = Client::builder()
        .bootstrap([sasl_bootstrap.as_str()])
        .sasl(SaslConfig::ScramSha256(Credentials::new(user, password)))
        .connect()
        .await?;
    println!(
        "over SASL: {} topics",
        sasl.admin().list_topics().await?.len()
    );

    // The same with properties, as a Java client's config file would say it.
    let config = Config::from_properties([
        ("bootstrap.servers", sasl_bootstrap.as_str()),
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "SCRAM-SHA-256"),
        ("sasl.username", user.as_str()),
        ("sasl.password", password.as_str()),
    ])?;
    let from_properties = config.client().await?;
    println!(
        "from properties: {} topics",
        from_properties.admin().list_topics().await?.len()
    );

    let wrong = Client::builder()
        .bootstrap([sasl_bootstrap.as_str()])
        .sasl(SaslConfig::ScramSha256(Credentials::new(
            user,
            "not the password",
        )))
        .connect()
        .await;
    match wrong {
        Err(err) if matches!(err.kind(), ErrorKind::Authentication) => {
            println!("a wrong password: {err}")
        }
        other => return Err(format!("a wrong password was not refused: {other:?}").into()),
    }
    Ok(())
}
