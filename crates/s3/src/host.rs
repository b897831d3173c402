//! Virtual-hosted-style requests: `Host: BUCKET.DOMAIN[:port]` names the bucket, as AWS's
//! `BUCKET.s3.REGION.amazonaws.com` does. Any other host (an IP address, `localhost`, a name
//! that is not under a configured domain) is path-style. s3s's own `SingleDomain` would take an
//! unknown host for a CNAME bucket, which would break every client that connects by IP.

use s3s::S3Result;
use s3s::host::{S3Host, VirtualHost};

/// The base domains under which a host's first labels are a bucket name.
#[derive(Debug, Clone)]
pub struct BucketDomains {
    domains: Vec<String>,
}

impl BucketDomains {
    /// `domains` without ports, e.g. `localhost` or `s3.example.internal`.
    pub fn new(domains: impl IntoIterator<Item = String>) -> Self {
        let domains = domains
            .into_iter()
            .map(|domain| domain.trim_matches('.').to_ascii_lowercase())
            .filter(|domain| !domain.is_empty())
            .collect();
        Self { domains }
    }

    /// The bucket a host names, if it names one.
    pub(crate) fn bucket<'a>(&self, host: &'a str) -> Option<&'a str> {
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        self.domains.iter().find_map(|domain| {
            let bucket = name
                .len()
                .checked_sub(domain.len() + 1)
                .filter(|&end| name.is_char_boundary(end))
                .map(|end| (&name[..end], &name[end..]))
                .filter(|(_, rest)| rest.starts_with('.') && rest[1..].eq_ignore_ascii_case(domain))
                .map(|(bucket, _)| bucket)?;
            (!bucket.is_empty()).then_some(bucket)
        })
    }
}

impl BucketDomains {
    /// The bucket a request addresses as a whole (`/BUCKET`, or `/` on a bucket's host), not
    /// one of its objects.
    pub fn bucket_of_request(&self, host: Option<&str>, path: &str) -> Option<String> {
        if let Some(bucket) = host.and_then(|host| self.bucket(host)) {
            return (path.is_empty() || path == "/").then(|| bucket.to_owned());
        }
        let name = path.strip_prefix('/')?;
        let name = name.strip_suffix('/').unwrap_or(name);
        (!name.is_empty() && !name.contains('/')).then(|| name.to_owned())
    }
}

impl S3Host for BucketDomains {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        Ok(match self.bucket(host) {
            Some(bucket) => VirtualHost::new(host).with_bucket(bucket),
            None => VirtualHost::new(host),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::BucketDomains;

    #[test]
    fn only_hosts_under_a_domain_name_a_bucket() {
        let domains =
            BucketDomains::new(["localhost".to_owned(), "s3.example.internal".to_owned()]);
        assert_eq!(domains.bucket("photos.localhost:8445"), Some("photos"));
        assert_eq!(
            domains.bucket("my.dotted.bucket.localhost"),
            Some("my.dotted.bucket")
        );
        assert_eq!(domains.bucket("logs.S3.Example.Internal:443"), Some("logs"));
        for path_style in [
            "localhost:8445",
            "127.0.0.1:8445",
            "[::1]:8445",
            "xlocalhost",
            ".localhost",
            "example.com",
        ] {
            assert_eq!(domains.bucket(path_style), None, "{path_style}");
        }
        let request = |host, path| domains.bucket_of_request(Some(host), path);
        assert_eq!(request("photos.localhost", "/").as_deref(), Some("photos"));
        assert_eq!(request("photos.localhost", "/key"), None);
        assert_eq!(
            request("127.0.0.1:8445", "/photos").as_deref(),
            Some("photos")
        );
        assert_eq!(
            request("127.0.0.1:8445", "/photos/").as_deref(),
            Some("photos")
        );
        assert_eq!(request("127.0.0.1:8445", "/photos/key"), None);
        assert_eq!(request("127.0.0.1:8445", "/"), None);
    }
}
