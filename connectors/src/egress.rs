//! The SSRF guard on outbound HTTP: which addresses hookflow may connect to, checked on IP-literal
//! URLs before sending and on every resolved address inside the DNS resolver.
//!
//! reqwest does not call the resolver for IP-literal hosts, so callers must run [`check_url`] (or
//! [`check_target`]) before each request; domain hosts are vetted by [`GuardedResolver`], whose
//! vetted addresses are the ones the connection uses, so DNS rebinding has no window.

use std::{
    error::Error,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

const ALLOW_HINT: &str = "start hookflow with --allow-private-targets to allow private targets";

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deny {
    /// Never reachable, whatever the settings (metadata services, link-local, multicast, …).
    Always(&'static str),
    /// Reachable only with `--allow-private-targets`.
    Private(&'static str),
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(ip) & mask == u32::from_be_bytes(net) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<Deny> {
    use Deny::{Always, Private};
    let rules: &[([u8; 4], u32, Deny)] = &[
        (
            [0, 0, 0, 0],
            8,
            Always("an unspecified (0.0.0.0/8) address"),
        ),
        (
            [169, 254, 0, 0],
            16,
            Always("a link-local/cloud metadata address"),
        ),
        (
            [100, 100, 100, 200],
            32,
            Always("the Alibaba Cloud metadata address"),
        ),
        ([224, 0, 0, 0], 4, Always("a multicast address")),
        ([255, 255, 255, 255], 32, Always("the broadcast address")),
        (
            [240, 0, 0, 0],
            4,
            Always("a reserved (240.0.0.0/4) address"),
        ),
        ([127, 0, 0, 0], 8, Private("a loopback address")),
        ([10, 0, 0, 0], 8, Private("a private address")),
        ([172, 16, 0, 0], 12, Private("a private address")),
        ([192, 168, 0, 0], 16, Private("a private address")),
        (
            [100, 64, 0, 0],
            10,
            Private("a shared (carrier-grade NAT) address"),
        ),
        (
            [192, 0, 0, 0],
            24,
            Private("an IETF protocol assignment (192.0.0.0/24) address"),
        ),
        ([192, 0, 2, 0], 24, Private("a documentation address")),
        ([198, 51, 100, 0], 24, Private("a documentation address")),
        ([203, 0, 113, 0], 24, Private("a documentation address")),
        ([198, 18, 0, 0], 15, Private("a benchmarking address")),
    ];
    rules
        .iter()
        .find(|(net, len, _)| in_v4(ip, *net, *len))
        .map(|(_, _, deny)| *deny)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Deny> {
    use Deny::{Always, Private};
    let rules: &[(Ipv6Addr, u32, Deny)] = &[
        (
            Ipv6Addr::UNSPECIFIED,
            128,
            Always("the unspecified address"),
        ),
        (Ipv6Addr::LOCALHOST, 128, Private("a loopback address")),
        (
            Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
            128,
            Always("the AWS cloud metadata address"),
        ),
        (
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
            10,
            Always("a link-local address"),
        ),
        (
            Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
            8,
            Always("a multicast address"),
        ),
        (
            Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
            7,
            Private("a unique local (private) address"),
        ),
        (
            Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
            10,
            Private("a site-local (private) address"),
        ),
        (
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
            32,
            Private("a documentation address"),
        ),
        // RFC 8215 local-use NAT64: the embedded IPv4 address sits where the operator chose.
        (
            Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
            48,
            Private("a local-use NAT64 address"),
        ),
    ];
    rules
        .iter()
        .find(|(net, len, _)| in_v6(ip, *net, *len))
        .map(|(_, _, deny)| *deny)
}

/// The IPv4 address an IPv6 address forwards to, for the translation and tunnel prefixes that
/// reach IPv4 hosts (IPv4-mapped is handled by `to_canonical` before this).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from(bits as u32);
    let s = ip.segments();
    if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        Some(low32) // NAT64
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::from((bits >> 80) as u32)) // 6to4
    } else if in_v6(ip, Ipv6Addr::UNSPECIFIED, 96)
        || in_v6(ip, Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0), 96)
    {
        Some(low32) // IPv4-compatible and IPv4-translated (SIIT)
    } else if s[0] == 0x2001 && s[1] == 0 {
        Some(Ipv4Addr::from(!(bits as u32))) // Teredo client, stored inverted
    } else {
        None
    }
}

/// Whether hookflow may connect to `ip`. Cloud metadata, link-local, unspecified, multicast,
/// reserved and broadcast addresses are always refused; loopback, private, CGNAT and other
/// special-purpose ranges only without `allow_private`. IPv6 forms that carry an IPv4 address
/// (mapped, NAT64, 6to4, …) are judged by that IPv4 address.
pub fn check_ip(ip: IpAddr, allow_private: bool) -> Result<(), String> {
    let (shown, deny) = match ip.to_canonical() {
        IpAddr::V4(v4) if ip.is_ipv6() => (format!("{ip} (IPv4 {v4})"), classify_v4(v4)),
        IpAddr::V4(v4) => (ip.to_string(), classify_v4(v4)),
        IpAddr::V6(v6) => match (classify_v6(v6), embedded_v4(v6)) {
            (Some(deny), _) => (ip.to_string(), Some(deny)),
            (None, Some(v4)) => (format!("{ip} (IPv4 {v4})"), classify_v4(v4)),
            (None, None) => return Ok(()),
        },
    };
    match deny {
        None => Ok(()),
        Some(Deny::Always(what)) => Err(format!("{shown} is {what} and is never allowed")),
        Some(Deny::Private(_)) if allow_private => Ok(()),
        Some(Deny::Private(what)) => Err(format!("{shown} is {what}; {ALLOW_HINT}")),
    }
}

/// `localhost` and `*.localhost` (RFC 6761), with or without the trailing dot.
fn is_localhost(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

fn check_name(host: &str, allow_private: bool) -> Result<(), String> {
    if !allow_private && is_localhost(host) {
        return Err(format!("{host} is a loopback name; {ALLOW_HINT}"));
    }
    Ok(())
}

/// Whether hookflow may send a request to `url`: http or https only; an IP-literal host is checked
/// with [`check_ip`] here because reqwest does not resolve it; `localhost` names count as
/// loopback. Other domain names are checked when [`GuardedResolver`] resolves them.
pub fn check_url(url: &url::Url, allow_private: bool) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme '{}' is not allowed; use http or https",
            url.scheme()
        ));
    }
    match url.host() {
        None => Err(format!("URL '{url}' has no host")),
        Some(url::Host::Ipv4(ip)) => check_ip(ip.into(), allow_private),
        Some(url::Host::Ipv6(ip)) => check_ip(ip.into(), allow_private),
        Some(url::Host::Domain(host)) => check_name(host, allow_private),
    }
}

/// Parse `url` and run [`check_url`] on it; for callers (the http step, the delivery worker) that
/// hold a URL as text.
pub fn check_target(url: &str, allow_private: bool) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("URL '{url}' is not valid: {e}"))?;
    check_url(&parsed, allow_private)?;
    Ok(parsed)
}

/// The resolver refused every address of a name. Found in a failed request's error chain by
/// [`denial`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressDenied(pub String);

impl fmt::Display for EgressDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "egress denied: {}", self.0)
    }
}

impl Error for EgressDenied {}

/// The reason a request failed because [`GuardedResolver`] refused its host, if it did. Such a
/// failure is final: retrying resolves to the same refusal.
pub fn denial(err: &reqwest::Error) -> Option<&str> {
    let mut cur: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(d) = e.downcast_ref::<EgressDenied>() {
            return Some(&d.0);
        }
        cur = e.source();
    }
    None
}

/// A DNS resolver that drops every address [`check_ip`] refuses and fails when none remain.
/// The connection uses exactly the addresses returned here.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardedResolver {
    allow_private: bool,
}

impl GuardedResolver {
    pub fn new(allow_private: bool) -> Self {
        Self { allow_private }
    }
}

/// The addresses of `host` that [`check_ip`] allows; an error when there are none.
fn vet(
    host: &str,
    addrs: impl IntoIterator<Item = SocketAddr>,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, Box<dyn Error + Send + Sync>> {
    let mut kept = Vec::new();
    let mut refused = None;
    for addr in addrs {
        match check_ip(addr.ip(), allow_private) {
            Ok(()) => kept.push(addr),
            Err(reason) => {
                tracing::debug!(host, %addr, reason, "egress: dropped a resolved address");
                refused.get_or_insert(reason);
            }
        }
    }
    match refused {
        Some(reason) if kept.is_empty() => Err(EgressDenied(format!(
            "{host} resolves only to refused addresses: {reason}"
        ))
        .into()),
        None if kept.is_empty() => Err(format!("{host} did not resolve to any address").into()),
        _ => Ok(kept),
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            check_name(&host, allow_private).map_err(EgressDenied)?;
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let kept = vet(&host, addrs, allow_private)?;
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::SocketAddr,
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
    };

    use super::*;
    use crate::HttpOptions;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn always_denied_even_with_allow_private() {
        for a in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "fd00:ec2::254",
            "100.100.100.200",
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "224.0.0.1",
            "239.255.255.250",
            "ff02::1",
            "240.0.0.1",
            "255.255.255.255",
            "::ffff:169.254.169.254",
            "::ffff:a9fe:a9fe",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::",
            "2002:a9fe:a9fe:1::1",
            "::ffff:0.0.0.0",
        ] {
            for allow in [false, true] {
                let err = check_ip(ip(a), allow).expect_err(a);
                assert!(err.ends_with("and is never allowed"), "{a}: {err}");
            }
        }
        assert_eq!(
            check_ip(ip("169.254.169.254"), true).unwrap_err(),
            "169.254.169.254 is a link-local/cloud metadata address and is never allowed"
        );
        assert_eq!(
            check_ip(ip("::ffff:169.254.169.254"), false).unwrap_err(),
            "::ffff:169.254.169.254 (IPv4 169.254.169.254) is a link-local/cloud metadata address and is never allowed"
        );
        assert!(
            check_ip(ip("fd00:ec2::254"), true)
                .unwrap_err()
                .contains("AWS cloud metadata")
        );
        assert!(
            check_ip(ip("100.100.100.200"), true)
                .unwrap_err()
                .contains("Alibaba")
        );
    }

    #[test]
    fn private_denied_unless_allowed() {
        for a in [
            "127.0.0.1",
            "127.255.255.254",
            "::1",
            "10.0.0.5",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "fc00::1",
            "fd12:3456::1",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "::ffff:7f00:1",
            "::ffff:10.1.2.3",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:5",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "::127.0.0.1",
            "64:ff9b:1::a00:5",
        ] {
            let err = check_ip(ip(a), false).expect_err(a);
            assert!(
                err.ends_with(
                    "start hookflow with --allow-private-targets to allow private targets"
                ),
                "{a}: {err}"
            );
            assert_eq!(check_ip(ip(a), true), Ok(()), "{a}");
        }
        assert_eq!(
            check_ip(ip("127.0.0.1"), false).unwrap_err(),
            "127.0.0.1 is a loopback address; start hookflow with --allow-private-targets to allow private targets"
        );
        assert!(
            check_ip(ip("::ffff:7f00:1"), false)
                .unwrap_err()
                .starts_with("::ffff:127.0.0.1 (IPv4 127.0.0.1) is a loopback")
        );
    }

    #[test]
    fn public_addresses_allowed() {
        for a in [
            "93.184.216.34",
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "169.255.0.1",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:93.184.216.34",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
        ] {
            assert_eq!(check_ip(ip(a), false), Ok(()), "{a}");
        }
    }

    #[test]
    fn check_url_sees_through_ip_spellings() {
        let denied = |u: &str| check_url(&url::Url::parse(u).unwrap(), false).unwrap_err();
        for u in [
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://user:pw@evil.example@127.0.0.1/",
            "https://[::1]:8443/x",
        ] {
            assert!(
                denied(u).contains("is a loopback address"),
                "{u}: {}",
                denied(u)
            );
        }
        assert_eq!(
            denied("http://[::ffff:a9fe:a9fe]/"),
            "::ffff:169.254.169.254 (IPv4 169.254.169.254) is a link-local/cloud metadata address and is never allowed"
        );
        assert!(denied("http://169.254.169.254/latest/meta-data/").contains("never allowed"));
        assert!(denied("http://[fd00:ec2::254]/").contains("never allowed"));
        for u in [
            "http://localhost/",
            "http://LOCALHOST./",
            "http://api.localhost:8080/",
        ] {
            assert!(
                denied(u)
                    .contains("is a loopback name; start hookflow with --allow-private-targets"),
                "{u}"
            );
            assert_eq!(check_url(&url::Url::parse(u).unwrap(), true), Ok(()), "{u}");
        }
        assert_eq!(
            denied("file:///etc/passwd"),
            "scheme 'file' is not allowed; use http or https"
        );
        assert_eq!(
            denied("gopher://x"),
            "scheme 'gopher' is not allowed; use http or https"
        );
        assert!(check_url(&url::Url::parse("file:///etc/passwd").unwrap(), true).is_err());
        assert_eq!(
            check_url(&url::Url::parse("http://127.0.0.1:8080/").unwrap(), true),
            Ok(())
        );
        assert_eq!(
            check_url(
                &url::Url::parse("https://api.example.com/x").unwrap(),
                false
            ),
            Ok(())
        );
        assert_eq!(
            check_url(&url::Url::parse("http://93.184.216.34/").unwrap(), false),
            Ok(())
        );
    }

    #[test]
    fn check_target_parses_and_checks() {
        assert_eq!(
            check_target("https://api.example.com/a?b=1", false)
                .unwrap()
                .as_str(),
            "https://api.example.com/a?b=1"
        );
        assert!(
            check_target("not a url", false)
                .unwrap_err()
                .starts_with("URL 'not a url' is not valid")
        );
        assert!(
            check_target("http://10.0.0.5/", false)
                .unwrap_err()
                .contains("private address")
        );
        assert!(check_target("http://10.0.0.5/", true).is_ok());
    }

    #[test]
    fn resolver_keeps_only_allowed_addresses() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let mixed = [
            sa("10.0.0.5:0"),
            sa("93.184.216.34:0"),
            sa("[::1]:0"),
            sa("[2606:4700::1111]:0"),
        ];
        assert_eq!(
            vet("rebind.example", mixed, false).unwrap(),
            [sa("93.184.216.34:0"), sa("[2606:4700::1111]:0")]
        );
        assert_eq!(vet("rebind.example", mixed, true).unwrap(), mixed);
        let err = vet(
            "internal.example",
            [sa("169.254.169.254:0"), sa("[fd00:ec2::254]:0")],
            true,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "egress denied: internal.example resolves only to refused addresses: \
             169.254.169.254 is a link-local/cloud metadata address and is never allowed"
        );
        assert!(err.downcast_ref::<EgressDenied>().is_some());
        assert!(
            vet("empty.example", [], false)
                .unwrap_err()
                .downcast_ref::<EgressDenied>()
                .is_none()
        );
    }

    /// A loopback server that counts requests.
    async fn counting_server() -> (SocketAddr, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                axum::Json(serde_json::json!({"ok": true}))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (addr, hits)
    }

    /// What the http step and the delivery worker do: check the URL, then send with the guarded client.
    async fn guarded_get(
        client: &reqwest::Client,
        url: &str,
        allow_private: bool,
    ) -> Result<u16, String> {
        let url = check_target(url, allow_private)?;
        let resp = client.get(url).send().await.map_err(|e| match denial(&e) {
            Some(reason) => format!("denied by resolver: {reason}"),
            None => format!("send failed: {e}"),
        })?;
        Ok(resp.status().as_u16())
    }

    #[tokio::test]
    async fn loopback_requests_refused_unless_allowed() {
        let (addr, hits) = counting_server().await;
        let port = addr.port();
        let strict = HttpOptions::default().client();
        let ip_url = format!("http://127.0.0.1:{port}/");
        let name_url = format!("http://localhost:{port}/");
        let err = guarded_get(&strict, &ip_url, false).await.unwrap_err();
        assert!(err.contains("127.0.0.1 is a loopback address"), "{err}");
        let err = guarded_get(&strict, &name_url, false).await.unwrap_err();
        assert!(err.contains("localhost is a loopback name"), "{err}");

        // Without the URL check, the resolver still refuses a name that resolves to loopback.
        let err = strict.get(&name_url).send().await.unwrap_err();
        assert!(
            denial(&err).is_some_and(|r| r.contains("localhost is a loopback name")),
            "{err:?}"
        );
        // reqwest never hands an IP literal to the resolver, but a name that resolves to one
        // takes the same path as this.
        let err = match GuardedResolver::new(false)
            .resolve("127.0.0.1".parse().unwrap())
            .await
        {
            Ok(_) => panic!("an address in 127/8 must be refused"),
            Err(e) => e,
        };
        let d = err.downcast_ref::<EgressDenied>().expect("an EgressDenied");
        assert_eq!(
            d.to_string(),
            "egress denied: 127.0.0.1 resolves only to refused addresses: 127.0.0.1 is a loopback address; \
             start hookflow with --allow-private-targets to allow private targets"
        );
        let allowed: Vec<_> = match GuardedResolver::new(true)
            .resolve("127.0.0.1".parse().unwrap())
            .await
        {
            Ok(a) => a.collect(),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(allowed, ["127.0.0.1:0".parse::<SocketAddr>().unwrap()]);
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "the local server must not be reached"
        );

        let lax = HttpOptions {
            allow_private_targets: true,
            ..HttpOptions::default()
        }
        .client();
        assert_eq!(guarded_get(&lax, &ip_url, true).await, Ok(200));
        assert_eq!(guarded_get(&lax, &name_url, true).await, Ok(200));
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }
}
