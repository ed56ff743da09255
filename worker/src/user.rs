//! `USER` and `--chown` values to numeric ids, the way runc and BuildKit do it: names are
//! looked up in the image's `/etc/passwd` and `/etc/group`; a value made only of digits is a
//! number and is never looked up as a name (CVE-2026-46680), and it must be in range rather
//! than wrap (`USER 4294967296` is an error, not root; CVE-2024-40635).

/// Who a process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Supplementary groups: the primary group and every group listing the user by name, as
    /// BuildKit ≥ 0.12 sets them.
    pub(crate) groups: Vec<u32>,
    /// The user's home directory from passwd, `/` when unknown.
    pub(crate) home: String,
}

/// A user or group that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// No passwd entry with that name.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    /// No group entry with that name.
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    /// A numeric id outside what the kernel accepts.
    #[error("id {0} is out of range (uids and gids must be in range 0-{1})")]
    OutOfRange(String, u32),
}

/// The largest uid/gid a process may run as (runc's limit).
pub(crate) const MAX_PROCESS_ID: u32 = i32::MAX as u32;
/// The largest uid/gid a file may have (`-1` means "unchanged" to chown).
pub(crate) const MAX_FILE_ID: u32 = u32::MAX - 1;

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || f[0].is_empty() || line.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].trim().parse().ok()?,
            gid: f[3].trim().parse().ok()?,
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn group_entries(group: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 3 || f[0].is_empty() || line.starts_with('#') {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].trim().parse().ok()?,
            members: f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    })
}

/// `Some` when `s` is a number (digits only): the id, or an error when out of range.
pub(crate) fn numeric(s: &str, max: u32) -> Option<Result<u32, UserError>> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match s.parse::<u64>() {
        Ok(n) if n <= u64::from(max) => Ok(n as u32),
        _ => Err(UserError::OutOfRange(s.to_owned(), max)),
    })
}

/// Resolves `user[:group]` against the image's passwd and group files (either may be
/// missing); `max` bounds numeric ids.
pub(crate) fn resolve(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
    max: u32,
) -> Result<Identity, UserError> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = passwd.unwrap_or("");
    let group = group.unwrap_or("");
    let (uid, mut gid, home, name) = match numeric(user, max) {
        Some(uid) => {
            let uid = uid?;
            match passwd_entries(passwd).find(|e| e.uid == uid) {
                Some(e) => (uid, e.gid, e.home.to_owned(), Some(e.name)),
                None => (uid, 0, "/".to_owned(), None),
            }
        }
        None if user.is_empty() => (0, 0, "/root".to_owned(), Some("root")),
        None => {
            let e = passwd_entries(passwd)
                .find(|e| e.name == user)
                .ok_or_else(|| UserError::UnknownUser(user.to_owned()))?;
            (e.uid, e.gid, e.home.to_owned(), Some(e.name))
        }
    };
    if uid > max || gid > max {
        return Err(UserError::OutOfRange(uid.max(gid).to_string(), max));
    }
    let mut groups = Vec::new();
    match grp.filter(|g| !g.is_empty()) {
        Some(g) => {
            gid = match numeric(g, max) {
                Some(n) => n?,
                None => group_entries(group)
                    .find(|e| e.name == g)
                    .map(|e| e.gid)
                    .ok_or_else(|| UserError::UnknownGroup(g.to_owned()))?,
            };
            groups.push(gid);
        }
        None => {
            groups.push(gid);
            if let Some(name) = name {
                for e in group_entries(group) {
                    if e.members.contains(&name) && !groups.contains(&e.gid) && e.gid <= max {
                        groups.push(e.gid);
                    }
                }
            }
        }
    }
    let home = if home.is_empty() {
        "/".to_owned()
    } else {
        home
    };
    Ok(Identity {
        uid,
        gid,
        groups,
        home,
    })
}

/// Resolves a `--chown` user and group (group defaults to the user's primary group) to
/// file ids.
pub(crate) fn resolve_owner(
    user: &str,
    group: Option<&str>,
    passwd: Option<&str>,
    groups: Option<&str>,
) -> Result<(u32, u32), UserError> {
    let spec = match group {
        Some(g) => format!("{user}:{g}"),
        None => user.to_owned(),
    };
    // A numeric user without a passwd entry keeps gid = uid for --chown, as BuildKit does
    // (`--chown=10` gives 10:10).
    if group.is_none()
        && let Some(uid) = numeric(user, MAX_FILE_ID)
    {
        let uid = uid?;
        let gid = passwd_entries(passwd.unwrap_or(""))
            .find(|e| e.uid == uid)
            .map_or(uid, |e| e.gid);
        return Ok((uid, gid));
    }
    let id = resolve(&spec, passwd, groups, MAX_FILE_ID)?;
    Ok((id.uid, id.gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app\napp:x:1000:\nnogroup:x:65534:\n";

    fn id(spec: &str) -> Result<Identity, UserError> {
        resolve(spec, Some(PASSWD), Some(GROUP), MAX_PROCESS_ID)
    }

    #[test]
    fn root_by_default() {
        assert_eq!(
            id("").unwrap(),
            Identity {
                uid: 0,
                gid: 0,
                groups: vec![0],
                home: "/root".into()
            }
        );
        assert_eq!(id("root").unwrap().home, "/root");
    }

    #[test]
    fn names_come_from_passwd_and_memberships_from_group() {
        let app = id("app").unwrap();
        assert_eq!(
            (app.uid, app.gid, app.home.as_str()),
            (1000, 1000, "/home/app")
        );
        assert_eq!(app.groups, [1000, 50]);
        assert_eq!(id("app:staff").unwrap().groups, [50]);
        assert_eq!(id("app:7").unwrap().gid, 7);
    }

    #[test]
    fn numeric_ids_are_never_looked_up_as_names() {
        let n = id("1234").unwrap();
        assert_eq!((n.uid, n.gid, n.home.as_str()), (1234, 0, "/"));
        assert_eq!(id("1000").unwrap().home, "/home/app");
        let no_files = resolve("42:43", None, None, MAX_PROCESS_ID).unwrap();
        assert_eq!((no_files.uid, no_files.gid), (42, 43));
    }

    #[test]
    fn out_of_range_and_unknown_are_errors() {
        assert!(matches!(id("4294967296"), Err(UserError::OutOfRange(..))));
        assert!(matches!(
            id("2147483648:2147483648"),
            Err(UserError::OutOfRange(..))
        ));
        assert!(matches!(id("-1:-1"), Err(UserError::UnknownUser(_))));
        assert_eq!(
            id("ghost").unwrap_err().to_string(),
            "unable to find user ghost: no matching entries in passwd file"
        );
        assert!(matches!(id("app:ghosts"), Err(UserError::UnknownGroup(_))));
    }

    #[test]
    fn chown_owner() {
        assert_eq!(
            resolve_owner("app", Some("staff"), Some(PASSWD), Some(GROUP)),
            Ok((1000, 50))
        );
        assert_eq!(
            resolve_owner("app", None, Some(PASSWD), Some(GROUP)),
            Ok((1000, 1000))
        );
        assert_eq!(resolve_owner("10", None, None, None), Ok((10, 10)));
        assert_eq!(resolve_owner("10", Some("20"), None, None), Ok((10, 20)));
        assert!(resolve_owner("99999999999", None, None, None).is_err());
    }
}
