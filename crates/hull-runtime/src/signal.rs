//! Signal names as engines send them: `KILL`, `SIGKILL` or `9`.

use nix::sys::signal::Signal;

pub fn parse(s: &str) -> Result<i32, String> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n)
            .map(|s| s as i32)
            .map_err(|_| format!("invalid signal {s:?}"));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .map(|s| s as i32)
        .map_err(|_| format!("invalid signal {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn all_three_spellings_work() {
        assert_eq!(parse("KILL"), Ok(9));
        assert_eq!(parse("SIGKILL"), Ok(9));
        assert_eq!(parse("9"), Ok(9));
        assert_eq!(parse("term"), Ok(15));
        assert!(parse("NOPE").is_err());
        assert!(parse("99").is_err());
    }
}
