//! Published ports of a container on user-mode networking (the `org.hull.net.publish`
//! annotation, docker's `-p` syntax): host port → container port through QEMU's user-mode
//! network. Engines publish ports themselves (in the network namespace they made); this is for
//! containers without one, such as the `hull` command's.

use std::net::IpAddr;

/// Annotation: comma-separated `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]`.
pub const ANNOTATION_PUBLISH: &str = "org.hull.net.publish";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortForward {
    pub proto: Proto,
    /// Host address to listen on (`None`: every address).
    pub host_addr: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
}

impl std::str::FromStr for PortForward {
    type Err = String;

    /// docker's `-p` syntax: `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (ports, proto) = match s.rsplit_once('/') {
            Some((p, "tcp")) => (p, Proto::Tcp),
            Some((p, "udp")) => (p, Proto::Udp),
            Some((_, other)) => return Err(format!("unknown protocol {other:?} (tcp or udp)")),
            None => (s, Proto::Tcp),
        };
        let (host, container) = ports
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} is not HOST_PORT:CONTAINER_PORT"))?;
        let (host_addr, host_port) = match host.rsplit_once(':') {
            Some((addr, port)) => {
                let addr = addr.trim_start_matches('[').trim_end_matches(']');
                let ip = addr
                    .parse::<IpAddr>()
                    .map_err(|_| format!("{addr:?} is not an IP address"))?;
                (Some(ip), port)
            }
            None => (None, host),
        };
        let port = |p: &str| -> Result<u16, String> {
            p.parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{p:?} is not a port number (1-65535)"))
        };
        Ok(Self {
            proto,
            host_addr,
            host_port: port(host_port)?,
            container_port: port(container)?,
        })
    }
}

/// Parses the annotation's value.
pub fn parse_list(value: &str) -> Result<Vec<PortForward>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_syntax_is_understood() {
        let p: PortForward = "8080:80".parse().unwrap();
        assert_eq!(
            (p.proto, p.host_addr, p.host_port, p.container_port),
            (Proto::Tcp, None, 8080, 80)
        );
        let p: PortForward = "127.0.0.1:5353:53/udp".parse().unwrap();
        assert_eq!(p.proto, Proto::Udp);
        assert_eq!(p.host_addr, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(parse_list("1:2, 3:4/tcp").unwrap().len(), 2);
    }

    #[test]
    fn bad_values_are_named() {
        for (bad, want) in [
            ("80", "HOST_PORT:CONTAINER_PORT"),
            ("x:80", "\"x\" is not a port"),
            ("1:2/sctp", "unknown protocol"),
            ("a.b:1:2", "not an IP"),
            ("0:80", "\"0\" is not a port"),
        ] {
            let e = bad.parse::<PortForward>().unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
