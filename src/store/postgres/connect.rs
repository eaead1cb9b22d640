//! A `postgres://` state URL: parsed, shown without its password, given the password that
//! PostgreSQL's own tools would use (`PGPASSWORD`, then the password file), and connected to
//! with TLS where it leaves this machine.

use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::config::{Host, SslMode};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Database {
    config: tokio_postgres::Config,
    /// A witness reached over TCP without TLS, for which the password file holds a line: the
    /// password is kept back, since nothing proves who answers there (`from_shown`).
    withheld: bool,
}

/// Why a witness database asking for a password was not sent one.
pub const WITHHELD: &str = "it asked for a password over a connection that does not prove the server (TCP without TLS, where whatever listens on that port answers: on a shared host, anyone once a tunnel is closed); mkplan sends a witness database's password only over a Unix socket or TLS whose certificate this machine trusts, and sent none";

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

impl Database {
    /// Parses a `postgres://` or `postgresql://` URL. The password comes from the URL, else
    /// `PGPASSWORD`, else the password file (`PGPASSFILE`, else `~/.pgpass`), as for `psql`.
    /// A database on another machine must be reached with `sslmode=require` (TLS, the server's
    /// certificate checked against this machine's trusted roots): the journal and its password
    /// never cross a network in clear text.
    pub fn parse(url: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        // A PostgreSQL URL has no fragment: what follows `#` would be taken into the
        // database's name and shown in every message (a password pasted there among them).
        if url.contains('#') {
            return Err(format!(
                "the state URL {} has a `#` part, which a PostgreSQL URL does not use: remove it (a password belongs in PGPASSWORD or ~/.pgpass, not in the URL)",
                redacted(url)
            ));
        }
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            format!(
                "the state URL {} is not a PostgreSQL URL mkplan can use: {e}. Write it as postgres://USER@HOST:PORT/DATABASE (the password in PGPASSWORD or ~/.pgpass, not in the URL)",
                redacted(url)
            )
        })?;
        if config.get_dbname().is_none() {
            return Err(format!(
                "the state URL {} names no database: add it, as in postgres://USER@HOST:PORT/mkplan",
                redacted(url)
            ));
        }
        let here = config.get_hosts().iter().all(|host| match host {
            Host::Unix(_) => true,
            Host::Tcp(name) => is_loopback(name),
        });
        if !here && config.get_ssl_mode() != SslMode::Require {
            return Err(format!(
                "the state URL {} reaches another machine without TLS: add ?sslmode=require, so that the journal and the database password never cross the network in clear text (mkplan checks the server's certificate against this machine's trusted roots)",
                redacted(url)
            ));
        }
        Ok(Self::finished(config, &env))
    }

    /// The database a message showed (`shown()`), to be reached again as `psql` would reach
    /// it: how a database named among the journal heads, which keep it shown and never with a
    /// password, is asked as a witness. Its password comes from the password file only, the
    /// line written for that very database: `PGPASSWORD` belongs to the database named today,
    /// and is never sent to another that answers where a witness once was (a tunnel's port
    /// taken over on a shared host). One on another machine is reached with TLS, as it had to
    /// be when mkplan wrote it.
    pub fn from_shown(shown: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let env = |name: &str| (name != "PGPASSWORD").then(|| env(name)).flatten();
        let unusable = || {
            format!(
                "{} is not a database URL as mkplan shows one",
                crate::quote::bare(shown)
            )
        };
        let rest = shown.strip_prefix("postgres://").ok_or_else(unusable)?;
        let slash = outside_brackets(rest, '/').next().ok_or_else(unusable)?;
        let (authority, dbname) = (&rest[..slash], &rest[slash + 1..]);
        let hosts_at = outside_brackets(authority, '@')
            .last()
            .map_or(0, |at| at + 1);
        let mut config = tokio_postgres::Config::new();
        if hosts_at > 0 {
            config.user(&authority[..hosts_at - 1]);
        }
        config.dbname(dbname);
        let hosts = &authority[hosts_at..];
        let mut start = 0;
        for end in outside_brackets(hosts, ',').chain([hosts.len()]) {
            let (host, port) = host_and_port(&hosts[start..end]).ok_or_else(unusable)?;
            // `[/socket/folder]`, or an IPv6 address `[::1]`.
            match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                Some(path) if path.starts_with('/') => config.host_path(path),
                Some(address) => config.host(address),
                None => config.host(host),
            };
            if let Some(port) = port {
                config.port(port);
            }
            start = end + 1;
        }
        let here = config.get_hosts().iter().all(|host| match host {
            Host::Unix(_) => true,
            Host::Tcp(name) => is_loopback(name),
        });
        if !here {
            config.ssl_mode(SslMode::Require);
        }
        // The password only where the server is proven: a Unix socket (the file system says
        // whose it is), or TLS checked against this machine's roots. Over TCP without TLS,
        // what answers may ask for it in clear text, and even SCRAM's proof without channel
        // binding can be guessed at offline: none is sent (a server that trusts this user
        // still answers).
        let proven = !here
            || config
                .get_hosts()
                .iter()
                .all(|host| matches!(host, Host::Unix(_)));
        if proven {
            return Ok(Self::finished(config, &env));
        }
        let withheld = password_file(&config, &env).is_some();
        let mut database = Self::finished(config, &|_: &str| None);
        database.withheld = withheld;
        Ok(database)
    }

    /// `config` with its password (from the URL, else `PGPASSWORD`, else the password file)
    /// and mkplan's connection settings.
    fn finished(mut config: tokio_postgres::Config, env: &impl Fn(&str) -> Option<String>) -> Self {
        if config.get_password().is_none() {
            let password = env("PGPASSWORD")
                .filter(|p| !p.is_empty())
                .or_else(|| password_file(&config, env));
            if let Some(password) = password {
                config.password(password);
            }
        }
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("mkplan");
        Self {
            config,
            withheld: false,
        }
    }

    /// The URL as messages show it: user, hosts, ports and database; never a password.
    pub fn shown(&self) -> String {
        let user = self
            .config
            .get_user()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let ports = self.config.get_ports();
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = ports
                    .get(i)
                    .or(ports.first())
                    .map(|p| format!(":{p}"))
                    .unwrap_or_default();
                match host {
                    // An IPv6 address in brackets, as a URL writes it.
                    Host::Tcp(name) if name.contains(':') => format!("[{name}]{port}"),
                    Host::Tcp(name) => format!("{name}{port}"),
                    Host::Unix(path) => format!("[{}]{port}", path.display()),
                }
            })
            .collect();
        format!(
            "postgres://{user}{}/{}",
            hosts.join(","),
            self.config.get_dbname().unwrap_or_default()
        )
    }

    pub(super) async fn connect(&self) -> Result<Client, String> {
        // In a block of its own, so that every failure is named with the database.
        let result: Result<Client, String> = async {
            if self.config.get_ssl_mode() == SslMode::Disable
                || self
                    .config
                    .get_hosts()
                    .iter()
                    .all(|h| matches!(h, Host::Unix(_)))
            {
                let (client, connection) = self
                    .config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| self.why_not(&e))?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Ok(client)
            } else {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let tls = <rustls::ClientConfig as rustls_platform_verifier::ConfigVerifierExt>::with_platform_verifier()
                    .map_err(|e| format!("cannot set up TLS: {e}"))?;
                let (client, connection) = self
                    .config
                    .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
                    .await
                    .map_err(|e| self.why_not(&e))?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Ok(client)
            }
        }
        .await;
        result.map_err(|why| format!("cannot connect to {}: {why}", self.shown()))
    }

    /// What a failed connection says: an authentication failure named as one, with the
    /// server's words (never a password: mkplan's are not in them), and a password kept back
    /// from a server nothing proves (`WITHHELD`).
    fn why_not(&self, error: &tokio_postgres::Error) -> String {
        if let Some(db) = error.as_db_error() {
            let what = if db.code().code().starts_with("28") {
                "authentication failed"
            } else {
                "the server refused"
            };
            return format!(
                "{what}: {} (SQLSTATE {})",
                crate::quote::bare(db.message()),
                db.code().code()
            );
        }
        let text = match std::error::Error::source(error) {
            Some(cause) => format!("{error}: {cause}"),
            None => error.to_string(),
        };
        if text.contains("password missing") {
            return if self.withheld {
                WITHHELD.to_string()
            } else {
                "authentication failed: the server asked for a password, and none is known for it (PGPASSWORD or ~/.pgpass, as psql reads them)".to_string()
            };
        }
        text
    }
}

/// The byte offsets of `separator` in `text` outside `[…]` (a socket folder's path, as
/// `shown()` writes it, may hold any character).
fn outside_brackets(text: &str, separator: char) -> impl Iterator<Item = usize> + '_ {
    let mut depth = 0usize;
    text.char_indices().filter_map(move |(at, c)| {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            c if c == separator && depth == 0 => return Some(at),
            _ => {}
        }
        None
    })
}

/// `name:port`, `[socket folder]:port` or either without its port, as `shown()` writes a
/// host; an IPv6 address is shown without brackets, so one that reads whole is a host alone.
fn host_and_port(text: &str) -> Option<(&str, Option<u16>)> {
    if text.is_empty() {
        return None;
    }
    if text.parse::<std::net::Ipv6Addr>().is_ok() {
        return Some((text, None));
    }
    match text.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some((host, Some(port.parse().ok()?)))
        }
        _ => Some((text, None)),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A URL shown in a message: whatever sits between `://` and `@` is replaced, and so is its
/// query (`?password=…`, `?sslpassword=…`), which may hold secrets too.
pub fn redacted(url: &str) -> String {
    let url = url.split_once('#').map_or(url, |(before, _)| before);
    let shown = crate::quote::bare(url);
    let (shown, query) = match shown.find('?') {
        Some(at) => (shown[..at].to_string(), "?…"),
        None => (shown, ""),
    };
    let shown = match (shown.find("://"), shown.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            format!("{}…{}", &shown[..start + 3], &shown[at..])
        }
        _ => shown,
    };
    shown + query
}

/// The password for this connection in PostgreSQL's password file, which must be private
/// (0600) as `psql` insists: lines of `host:port:database:user:password`, `*` matching any.
fn password_file(
    config: &tokio_postgres::Config,
    env: &impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let path = env("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".pgpass")))?;
    let text = crate::bounded_read::read_to_string(&path, 1 << 20).ok()?;
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            eprintln!(
                "warning: the password file {} is not private (mode {:o}); it is ignored, as psql ignores it. Fix it with `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
            return None;
        }
    }
    // libpq's rule: a TCP host by its name; a Unix socket by its folder, or `localhost` for
    // the default one.
    let (host, socket) = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => (name.clone(), None),
        Some(Host::Unix(path)) => ("localhost".to_string(), Some(path.display().to_string())),
        None => ("localhost".to_string(), None),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let database = config.get_dbname().unwrap_or_default();
    let user = config
        .get_user()
        .map(str::to_string)
        .or_else(|| env("USER"))
        .unwrap_or_default();
    let wanted = [host.as_str(), port.as_str(), database, user.as_str()];
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = split_fields(line);
            if fields.len() != 5 {
                return None;
            }
            let matches = fields[..4]
                .iter()
                .zip(wanted)
                .enumerate()
                .all(|(at, (field, want))| {
                    field == "*" || field == want || (at == 0 && socket.as_deref() == Some(field))
                });
            matches.then(|| fields[4].clone())
        })
}

/// One line of the password file, split at unescaped colons (`\:` and `\\` are literal).
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field at least").push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => fields.last_mut().expect("one field at least").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_url_is_shown_without_its_password_and_another_machine_needs_tls() {
        let db = Database::parse("postgres://ops:s3cret@127.0.0.1:5433/mkplan", no_env).unwrap();
        assert_eq!(db.shown(), "postgres://ops@127.0.0.1:5433/mkplan");
        let refused =
            Database::parse("postgres://ops:s3cret@db.example:5432/mkplan", no_env).unwrap_err();
        assert!(refused.contains("sslmode=require"), "{refused}");
        assert!(!refused.contains("s3cret"), "{refused}");
        assert!(
            Database::parse("postgres://ops@db.example/mkplan?sslmode=require", no_env).is_ok()
        );
        let bad = Database::parse("postgres://ops:s3cret@h:notaport/x", no_env).unwrap_err();
        assert!(!bad.contains("s3cret"), "{bad}");
        for url in [
            "postgres://ops@db.example:5432/mkplan?password=s3cret",
            "postgres://ops@db.example:5432/?password=s3cret",
            "postgres://ops@h:notaport/x?password=s3cret",
        ] {
            let refused = Database::parse(url, no_env).unwrap_err();
            assert!(!refused.contains("s3cret"), "{refused}");
        }
        // A `#` part (round 7: a password pasted after it was shown in "cannot reach …").
        let refused =
            Database::parse("postgres://ops@127.0.0.1:5/mk#S3cretPW", no_env).unwrap_err();
        assert!(refused.contains("`#` part"), "{refused}");
        assert!(!refused.contains("S3cretPW"), "{refused}");
    }

    #[test]
    fn a_database_shown_is_reached_again_as_it_was_shown() {
        for url in [
            "postgres://ops:s3cret@127.0.0.1:5433/mkplan",
            "postgres://ops@localhost/mk",
            "postgres://ops@db.example:5432/mkplan?sslmode=require",
            "postgres://ops@a.example:5432,b.example:5433/mkplan?sslmode=require",
            "postgres://ops@[::1]:5432/mk",
            "postgres://ops%40server@127.0.0.1:5432/mk",
            "postgres://ops@%2Frun%2Fpg%3Ahere:5432/mk",
        ] {
            let shown = Database::parse(url, no_env).unwrap().shown();
            let again = Database::from_shown(&shown, no_env).unwrap();
            assert_eq!(again.shown(), shown, "{url}");
            assert_eq!(again.config.get_password(), None, "{url}");
        }
        let remote = Database::from_shown("postgres://ops@db.example:5432/mkplan", no_env).unwrap();
        assert_eq!(remote.config.get_ssl_mode(), SslMode::Require);
        // PGPASSWORD is for the database named today, never sent to a witness.
        let env = |name: &str| (name == "PGPASSWORD").then(|| "from-env".to_string());
        let local = Database::from_shown("postgres://ops@127.0.0.1:5432/mk", env).unwrap();
        assert_eq!(local.config.get_password(), None);
        let ipv6 = Database::from_shown("postgres://ops@[::1]:5433/mk", no_env).unwrap();
        assert_eq!(ipv6.shown(), "postgres://ops@[::1]:5433/mk");
        assert!(matches!(&ipv6.config.get_hosts()[0], Host::Tcp(h) if h == "::1"));
        assert!(Database::from_shown("/srv/state", no_env).is_err());
    }

    #[test]
    fn a_witness_gets_the_password_files_line_only_where_the_server_is_proven() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "/run/pg-elsewhere:5432:mk:ops:wrong\n/run/pg-team:5433:mk:ops:sock\n127.0.0.1:5432:mk:ops:tcp\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let env = |name: &str| match name {
            "PGPASSFILE" => Some(file.display().to_string()),
            "PGPASSWORD" => Some("from-env".to_string()),
            _ => None,
        };
        let socket = Database::from_shown("postgres://ops@[/run/pg-team]:5433/mk", env).unwrap();
        assert_eq!(socket.config.get_password(), Some(&b"sock"[..]));
        assert!(!socket.withheld);
        // Over TCP on this machine without TLS nothing proves the server: its line is kept
        // back, and a server asking for it is told why (`WITHHELD`).
        let tcp = Database::from_shown("postgres://ops@127.0.0.1:5432/mk", env).unwrap();
        assert_eq!(tcp.config.get_password(), None);
        assert!(tcp.withheld);
        // Another machine is reached with TLS checked: nothing is kept back there.
        let remote = Database::from_shown("postgres://ops@db.example:5432/mk", |name: &str| {
            (name == "PGPASSFILE").then(|| file.display().to_string())
        })
        .unwrap();
        assert_eq!(remote.config.get_ssl_mode(), SslMode::Require);
        assert!(!remote.withheld);
    }

    #[test]
    fn the_password_file_is_read_as_psql_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# comment\nother:5432:*:ops:wrong\n127.0.0.1:5433:mkplan:ops:pa\\:ss\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let env = |name: &str| (name == "PGPASSFILE").then(|| file.display().to_string());
        let db = Database::parse("postgres://ops@127.0.0.1:5433/mkplan", env).unwrap();
        assert_eq!(db.config.get_password(), Some(&b"pa:ss"[..]));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let db = Database::parse("postgres://ops@127.0.0.1:5433/mkplan", env).unwrap();
        assert_eq!(
            db.config.get_password(),
            None,
            "a file others may read is ignored"
        );
        let env = |name: &str| (name == "PGPASSWORD").then(|| "from-env".to_string());
        let db = Database::parse("postgres://ops@127.0.0.1:5433/mkplan", env).unwrap();
        assert_eq!(db.config.get_password(), Some(&b"from-env"[..]));
    }
}
