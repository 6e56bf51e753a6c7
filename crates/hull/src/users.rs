//! `-u user[:group]` resolved like docker (runc's `GetExecUser`): names are looked up in the
//! container's `/etc/passwd` and `/etc/group`, numbers need no entry.

use std::path::Path;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("invalid user {0:?}: expected user[:group], names or numbers")]
    Syntax(String),
    #[error("unable to find user {0}: no matching entries in the image's /etc/passwd")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in the image's /etc/group")]
    NoGroup(String),
}

/// The user a process runs as.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the groups of /etc/group that list the user by name.
    pub additional_gids: Vec<u32>,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && !l.starts_with('#')).then_some(())?;
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && !l.starts_with('#')).then_some(())?;
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f
                .get(3)
                .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
                .unwrap_or_default(),
        })
    })
}

fn valid_part(s: &str) -> bool {
    !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c == ':')
}

/// Checks the syntax of `user[:group]` without any file (before anything is created).
pub fn check_syntax(spec: &str) -> Result<(), UserError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if !valid_part(user) || group.is_some_and(|g| !valid_part(g)) {
        return Err(UserError::Syntax(spec.to_string()));
    }
    Ok(())
}

/// Resolves `spec` (`""` = root) against the texts of /etc/passwd and /etc/group.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<User, UserError> {
    let spec = if spec.is_empty() { "0" } else { spec };
    check_syntax(spec)?;
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, mut gid, name) = match user_part.parse::<u32>() {
        Ok(uid) => match passwd_entries(passwd).find(|e| e.uid == uid) {
            Some(e) => (uid, e.gid, Some(e.name)),
            None => (uid, 0, None),
        },
        Err(_) => {
            let e = passwd_entries(passwd)
                .find(|e| e.name == user_part)
                .ok_or_else(|| UserError::NoUser(user_part.to_string()))?;
            (e.uid, e.gid, Some(e.name))
        }
    };
    if let Some(g) = group_part {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_entries(group)
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| UserError::NoGroup(g.to_string()))?,
        };
    }
    let mut additional_gids: Vec<u32> = match name {
        Some(n) => group_entries(group)
            .filter(|e| e.members.contains(&n))
            .map(|e| e.gid)
            .filter(|g| *g != gid)
            .collect(),
        None => Vec::new(),
    };
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(User {
        uid,
        gid,
        additional_gids,
    })
}

/// Resolves `spec` against a root file system's /etc/passwd and /etc/group (missing files are
/// empty, so numeric ids still work).
pub fn resolve_in_rootfs(rootfs: &Path, spec: &str) -> Result<User, UserError> {
    let read = |p: &str| {
        crate::rootfs::resolve_in_root(rootfs, Path::new(p))
            .ok()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    };
    resolve(spec, &read("/etc/passwd"), &read("/etc/group"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
                          www:x:33:33:www:/var/www:/bin/false\n\
                          nobody:x:65534:65534:nobody:/:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:root,www\nwww:x:33:\nstaff:x:50:www\n";

    fn user(uid: u32, gid: u32, extra: &[u32]) -> User {
        User {
            uid,
            gid,
            additional_gids: extra.to_vec(),
        }
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(resolve("", PASSWD, GROUP).unwrap(), user(0, 0, &[10]));
        assert_eq!(
            resolve("www", PASSWD, GROUP).unwrap(),
            user(33, 33, &[10, 50])
        );
        assert_eq!(
            resolve("33", PASSWD, GROUP).unwrap(),
            user(33, 33, &[10, 50])
        );
        assert_eq!(resolve("1234", PASSWD, GROUP).unwrap(), user(1234, 0, &[]));
        assert_eq!(
            resolve("1234:5", PASSWD, GROUP).unwrap(),
            user(1234, 5, &[])
        );
        assert_eq!(
            resolve("www:staff", PASSWD, GROUP).unwrap(),
            user(33, 50, &[10])
        );
        assert_eq!(
            resolve("nobody:0", "", "").unwrap_err(),
            UserError::NoUser("nobody".into())
        );
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            resolve("alice", PASSWD, GROUP).unwrap_err(),
            UserError::NoUser("alice".into())
        );
        assert_eq!(
            resolve("www:nogroup", PASSWD, GROUP).unwrap_err(),
            UserError::NoGroup("nogroup".into())
        );
        for bad in [":", "a:", ":b", "a b", "a:b:c"] {
            assert!(check_syntax(bad).is_err(), "{bad}");
        }
    }
}
