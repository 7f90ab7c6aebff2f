//! Secrets delivered as files: the value goes in a file, the file's path in the variable (the
//! `*_FILE` convention of database images and many frameworks).
//!
//! Never on persistent disk. Where the file lives depends on the mode, because each place has a
//! limit:
//!
//! - **exec** (the default): an anonymous memory file (`memfd_create`), sealed against writes and
//!   inherited by the command as a descriptor; the variable holds `/proc/self/fd/N`. Nothing is
//!   left behind: the memory is freed when the last descriptor closes. What breaks: an app that
//!   closes the descriptors it inherits before reading (some daemons do), and a path handed to
//!   another process that did not inherit the descriptor (`/proc/self` is per process).
//! - **supervisor** (`--init`): a private directory (`0700`, or `0711` when a file is owned by
//!   another user) on a tmpfs (`$KVRUN_SECRETS_DIR`, else `/dev/shm`, else `$XDG_RUNTIME_DIR`;
//!   kvrun checks that it is a tmpfs and refuses anything else). Any process that may open the
//!   path can read it, `--watch` replaces files atomically, and kvrun removes the directory when
//!   the command exits. What breaks: a `SIGKILL` to kvrun itself leaves the directory until the
//!   tmpfs is cleared (a reboot, or the container's end).
//!
//! `mode` (default `0400`) and `owner` (`user[:group]`) are applied to the file itself, for
//! entrypoints that drop privileges after kvrun (gosu, su-exec): kvrun runs as root, the file is
//! made readable by the user the app will run as.
//!
//! Certificate-backed secrets are decoded by content type: `application/x-pkcs12` is base64 in
//! Key Vault and is written as the binary PKCS#12; PEM (`application/x-pem-file`) and everything
//! else is written as it is.

use std::ffi::OsString;
use std::fmt;

use zeroize::Zeroizing;

pub(crate) use crate::source::FileSpec;

/// A value to deliver as a file. `Debug` shows the variable and the size, never the contents.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct FileSecret {
    pub var: OsString,
    pub contents: Zeroizing<Vec<u8>>,
    pub spec: FileSpec,
}

impl fmt::Debug for FileSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSecret")
            .field("var", &self.var)
            .field("bytes", &self.contents.len())
            .field("spec", &self.spec)
            .finish()
    }
}

/// The bytes to write for a value of `content_type`.
///
/// # Errors
/// A PKCS#12 value that is not base64.
pub(crate) fn decode(
    value: &str,
    content_type: Option<&str>,
) -> Result<Zeroizing<Vec<u8>>, String> {
    use base64::Engine as _;
    let essence = content_type.map(|t| {
        t.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    if essence.as_deref() == Some("application/x-pkcs12") {
        let compact: String = value.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let compact = Zeroizing::new(compact);
        return base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map(Zeroizing::new)
            .map_err(|_| {
                "the content type is application/x-pkcs12 but the value is not base64".to_owned()
            });
    }
    Ok(Zeroizing::new(value.as_bytes().to_vec()))
}

#[cfg(target_os = "linux")]
pub(crate) use linux::{SecretDir, memfd};

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::{OsStr, OsString};
    use std::fs::{self, File, OpenOptions};
    use std::io::Write as _;
    use std::os::fd::{AsRawFd as _, OwnedFd};
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
    use std::path::{Path, PathBuf};

    use nix::fcntl::{FcntlArg, SealFlag, fcntl};
    use nix::sys::memfd::{MFdFlags, memfd_create};
    use nix::sys::statfs::{TMPFS_MAGIC, statfs};
    use nix::unistd::{Gid, Group, Uid, User, fchown};

    use super::{FileSecret, FileSpec};

    /// `user[:group]` as ids; a user name without a group takes the user's primary group.
    fn owner_ids(owner: &str) -> Result<(Uid, Option<Gid>), String> {
        let (user, group) = match owner.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (owner, None),
        };
        let (uid, primary) = if let Ok(n) = user.parse::<u32>() {
            (Uid::from_raw(n), None)
        } else {
            let found = User::from_name(user)
                .map_err(|e| format!("cannot look up user {user}: {e}"))?
                .ok_or_else(|| format!("no user named {user}"))?;
            (found.uid, Some(found.gid))
        };
        let gid = match group {
            None => primary,
            Some(g) => Some(if let Ok(n) = g.parse::<u32>() {
                Gid::from_raw(n)
            } else {
                Group::from_name(g)
                    .map_err(|e| format!("cannot look up group {g}: {e}"))?
                    .ok_or_else(|| format!("no group named {g}"))?
                    .gid
            }),
        };
        Ok((uid, gid))
    }

    fn apply(file: &File, spec: &FileSpec) -> Result<(), String> {
        if let Some(owner) = &spec.owner {
            let (uid, gid) = owner_ids(owner)?;
            fchown(file, Some(uid), gid)
                .map_err(|e| format!("cannot give the file to {owner}: {e}"))?;
        }
        file.set_permissions(fs::Permissions::from_mode(spec.mode))
            .map_err(|e| format!("cannot set mode {:o}: {e}", spec.mode))
    }

    /// Exec mode: a sealed memory file the command inherits; returns the variable's value
    /// (`/proc/self/fd/N`) and the descriptor, which must stay open until exec.
    ///
    /// # Errors
    /// The kernel refused a step, or the owner does not exist.
    pub(crate) fn memfd(secret: &FileSecret) -> Result<(OsString, OwnedFd), String> {
        // Not close-on-exec: the command inherits it.
        let fd = memfd_create("kvrun-secret", MFdFlags::MFD_ALLOW_SEALING)
            .map_err(|e| format!("memfd_create: {e}"))?;
        let mut file = File::from(fd);
        file.write_all(&secret.contents)
            .map_err(|e| format!("cannot write the memory file: {e}"))?;
        apply(&file, &secret.spec)?;
        fcntl(
            &file,
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_SEAL
                    | SealFlag::F_SEAL_SHRINK
                    | SealFlag::F_SEAL_GROW
                    | SealFlag::F_SEAL_WRITE,
            ),
        )
        .map_err(|e| format!("cannot seal the memory file: {e}"))?;
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        Ok((path.into(), OwnedFd::from(file)))
    }

    /// Supervisor mode: a private directory on a tmpfs, removed on drop.
    #[derive(Debug)]
    pub(crate) struct SecretDir {
        path: PathBuf,
    }

    impl SecretDir {
        /// Make the directory under the first usable tmpfs.
        ///
        /// # Errors
        /// No tmpfs to use, or the directory cannot be made.
        pub(crate) fn create(
            base: Option<&Path>,
            runtime_dir: Option<&Path>,
            shared: bool,
        ) -> Result<Self, String> {
            let candidates: Vec<&Path> = match base {
                Some(base) => vec![base],
                None => [Some(Path::new("/dev/shm")), runtime_dir]
                    .into_iter()
                    .flatten()
                    .collect(),
            };
            let mut refused = Vec::new();
            for parent in candidates {
                match statfs(parent) {
                    Ok(fs) if fs.filesystem_type() == TMPFS_MAGIC => {}
                    Ok(_) => {
                        refused.push(format!("{} is not a tmpfs", parent.display()));
                        continue;
                    }
                    Err(e) => {
                        refused.push(format!("{}: {e}", parent.display()));
                        continue;
                    }
                }
                let mut random = [0u8; 8];
                aws_lc_rs::rand::fill(&mut random).map_err(|_| "no randomness".to_owned())?;
                let name = format!("kvrun-{}-{}", std::process::id(), hex(&random));
                let path = parent.join(name);
                // 0711 lets another user (the app after gosu) reach a file it owns, not list them.
                let mode = if shared { 0o711 } else { 0o700 };
                fs::DirBuilder::new()
                    .mode(mode)
                    .create(&path)
                    .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                // From here on a panic (which aborts, running no destructor) removes it.
                crate::launch::panic_guard::set_secret_dir(&path);
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                    .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
                return Ok(Self { path });
            }
            Err(format!(
                "no tmpfs for secret files ({}); set KVRUN_SECRETS_DIR to a tmpfs directory",
                refused.join("; ")
            ))
        }

        #[must_use]
        pub(crate) fn path(&self) -> &Path {
            &self.path
        }

        /// Write (or atomically replace) the file for `secret`; returns its path.
        ///
        /// # Errors
        /// The file cannot be written, owned or moved into place.
        pub(crate) fn write(&self, secret: &FileSecret) -> Result<PathBuf, String> {
            let target = self.path.join(file_name(&secret.var));
            let temporary = self.path.join(format!(".{}.new", file_name(&secret.var)));
            let _ = fs::remove_file(&temporary);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&temporary)
                .map_err(|e| format!("cannot create {}: {e}", temporary.display()))?;
            let written = file
                .write_all(&secret.contents)
                .map_err(|e| format!("cannot write {}: {e}", temporary.display()))
                .and_then(|()| apply(&file, &secret.spec))
                .and_then(|()| {
                    fs::rename(&temporary, &target)
                        .map_err(|e| format!("cannot move {} into place: {e}", target.display()))
                });
            if written.is_err() {
                let _ = fs::remove_file(&temporary);
            }
            written.map(|()| target)
        }
    }

    impl Drop for SecretDir {
        fn drop(&mut self) {
            crate::launch::panic_guard::forget_secret_dir(&self.path);
            if let Err(e) = fs::remove_dir_all(&self.path) {
                tracing::warn!("cannot remove {}: {e}", self.path.display());
            }
        }
    }

    fn hex(bytes: &[u8]) -> String {
        use std::fmt::Write as _;
        bytes.iter().fold(String::new(), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
    }

    /// The variable's name when it is a plain file name, else a hex spelling of it.
    fn file_name(var: &OsStr) -> String {
        let bytes = var.as_bytes();
        let plain = !bytes.is_empty()
            && bytes[0] != b'.'
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if plain {
            var.to_string_lossy().into_owned()
        } else {
            format!("var-{}", hex(bytes))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn file_names_cannot_escape_the_directory() {
            assert_eq!(
                file_name(OsStr::new("DB_PASSWORD_FILE")),
                "DB_PASSWORD_FILE"
            );
            assert_eq!(file_name(OsStr::new("../x")), "var-2e2e2f78");
            assert_eq!(file_name(OsStr::new(".hidden")), "var-2e68696464656e");
        }

        #[test]
        fn numeric_owner() {
            assert_eq!(
                owner_ids("1000:2000").unwrap(),
                (Uid::from_raw(1000), Some(Gid::from_raw(2000)))
            );
            assert_eq!(owner_ids("1000").unwrap(), (Uid::from_raw(1000), None));
            assert!(owner_ids("no-such-user-kvrun").is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs12_is_decoded_and_pem_is_not() {
        assert_eq!(
            &*decode("AAEC", Some("application/x-pkcs12")).unwrap(),
            &[0, 1, 2]
        );
        assert_eq!(
            &*decode("AA\nEC", Some("application/x-pkcs12; charset=x")).unwrap(),
            &[0, 1, 2]
        );
        assert!(decode("not base64!", Some("application/x-pkcs12")).is_err());
        let pem = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
        assert_eq!(
            &*decode(pem, Some("application/x-pem-file")).unwrap(),
            pem.as_bytes()
        );
        assert_eq!(&*decode("AAEC", None).unwrap(), b"AAEC");
    }

    #[test]
    fn modes_and_owners() {
        assert!(FileSpec::new(0o440, Some("app:app".into())).is_ok());
        assert!(FileSpec::new(0o4755, None).is_err());
        assert!(FileSpec::new(0o400, Some("a:b:c".into())).is_err());
        assert!(FileSpec::new(0o400, Some(":g".into())).is_err());
    }
}
