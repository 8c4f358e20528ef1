//! Per-queue authorization of remote clients (`server.clients.rules`, docs/CLIENTS.md,
//! "Authorization").
//!
//! A client's identity is the first DNS subject alternative name of the certificate it
//! presented in the mutual TLS handshake of the gRPC port (the acceptor already checked that
//! the certificate chains to the CA: `crate::tls`). A stream is allowed when a rule matches the
//! identity, the queue, and grants the right: `write` to produce, `read` to consume. Without
//! rules there is no authorization (every client may do everything); rules need `server.tls`
//! (the configuration refuses them without it), so there is always an identity to match.
//!
//! The dead-letter queue a consumer's records move to is written by the node, not by the
//! client: it needs no right.

use std::sync::Arc;

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use super::Refusal;
use crate::config::{ClientRight, ClientRule};
use crate::metrics::ClientMetrics;

/// Who opened a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The stream did not come over TLS (no identity).
    Anonymous,
    /// The stream came over mutual TLS; the certificate's first DNS name, if it has one.
    Certified(Option<String>),
}

impl Caller {
    /// The caller of a request, from the connection's TLS information.
    pub fn of(extensions: &http::Extensions) -> Caller {
        let Some(certs) = extensions
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs)
        else {
            return Caller::Anonymous;
        };
        Caller::Certified(certs.first().and_then(|leaf| first_dns_name(leaf)))
    }

    /// The identity as refusals and metrics name it ("" when there is none).
    fn identity(&self) -> &str {
        match self {
            Caller::Certified(Some(name)) => name,
            _ => "",
        }
    }
}

/// The first DNS subject alternative name of a DER certificate.
fn first_dns_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
        _ => None,
    })
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters (none included)
/// and every other character itself.
pub fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole name.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The rules in force (none: every stream is allowed).
#[derive(Debug, Clone, Default)]
pub struct Rules(Arc<Vec<ClientRule>>);

impl Rules {
    /// `rules` as configured.
    pub fn new(rules: Vec<ClientRule>) -> Rules {
        Rules(Arc::new(rules))
    }

    /// Whether `caller` may do `right` on `queue`; a refusal naming the identity, the queue and
    /// the missing right (counted in `repliq_client_denied_total`) if not.
    pub fn check(
        &self,
        caller: &Caller,
        queue: &str,
        right: ClientRight,
        metrics: &ClientMetrics,
    ) -> Result<(), Refusal> {
        if self.0.is_empty() {
            return Ok(());
        }
        let allowed = match caller {
            Caller::Certified(Some(identity)) => self.0.iter().any(|rule| {
                rule.allow.contains(&right)
                    && matches(&rule.identity, identity)
                    && rule.queues.iter().any(|q| matches(q, queue))
            }),
            _ => false,
        };
        if allowed {
            return Ok(());
        }
        let identity = caller.identity();
        metrics.denied(identity, right.as_str());
        let why = match caller {
            Caller::Certified(Some(_)) => "no rule of server.clients.rules allows it".to_owned(),
            Caller::Certified(None) => {
                "the client's certificate has no DNS subject alternative name, the identity \
                 server.clients.rules match"
                    .to_owned()
            }
            Caller::Anonymous => "the stream did not come over mutual TLS".to_owned(),
        };
        tracing::warn!(identity, queue, right = right.as_str(), %why, "client stream denied");
        Err(Refusal::permission_denied(
            identity,
            queue,
            right.as_str(),
            &why,
        ))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn patterns_match_whole_names_with_stars() {
        assert!(matches("orders", "orders"));
        assert!(!matches("orders", "orders.dlq"));
        assert!(!matches("orders", "order"));
        assert!(matches("orders.*", "orders.dlq"));
        assert!(matches("orders.*", "orders."));
        assert!(!matches("orders.*", "orders"));
        assert!(matches("billing-*", "billing-eu-1"));
        assert!(!matches("billing-*", "xbilling-1"));
        assert!(matches("*", ""));
        assert!(matches("*-api-*", "shop-api-7"));
        assert!(!matches("*-api-*", "shop-ap-7"));
        assert!(matches("a*a", "aa"));
        assert!(
            !matches("a*a", "a"),
            "the prefix and the suffix may not overlap"
        );
        assert!(matches("*.eu", "x.eu"));
        assert!(!matches("*.eu", "x.us"));
    }

    fn rule(identity: &str, queues: &[&str], allow: &[ClientRight]) -> ClientRule {
        ClientRule {
            identity: identity.into(),
            queues: queues.iter().map(|q| (*q).to_owned()).collect(),
            allow: allow.to_vec(),
        }
    }

    #[test]
    fn rules_deny_by_default_and_name_what_is_missing() {
        use ClientRight::{Read, Write};
        let metrics = ClientMetrics::default();
        let who = |name: &str| Caller::Certified(Some(name.to_owned()));
        assert!(
            Rules::default()
                .check(&Caller::Anonymous, "orders", Write, &metrics)
                .is_ok(),
            "no rules: no authorization"
        );
        let rules = Rules::new(vec![
            rule("billing-*", &["orders", "orders.*"], &[Read, Write]),
            rule("audit", &["*"], &[Read]),
        ]);
        assert!(
            rules
                .check(&who("billing-1"), "orders", Write, &metrics)
                .is_ok()
        );
        assert!(
            rules
                .check(&who("billing-1"), "orders.eu", Read, &metrics)
                .is_ok()
        );
        assert!(
            rules
                .check(&who("audit"), "payments", Read, &metrics)
                .is_ok()
        );
        let denied = rules
            .check(&who("audit"), "payments", Write, &metrics)
            .unwrap_err();
        assert_eq!(
            denied.0.message,
            "client \"audit\" may not write queue \"payments\": no rule of server.clients.rules \
             allows it"
        );
        assert!(
            rules
                .check(&who("billing-1"), "payments", Read, &metrics)
                .is_err()
        );
        assert!(
            rules
                .check(&who("mallory"), "orders", Read, &metrics)
                .is_err()
        );
        assert!(
            rules
                .check(&Caller::Certified(None), "orders", Read, &metrics)
                .is_err()
        );
        assert!(
            rules
                .check(&Caller::Anonymous, "orders", Read, &metrics)
                .is_err()
        );
    }
}
