//! Where passphrases for encrypted images come from: `--key-file FILE`
//! (`-` for standard input), qemu's `--object secret,id=ID,file=FILE`, or
//! the file named by `QVET_PASSPHRASE_FILE`. Never from the command line
//! itself. The bytes are used exactly as read (no newline is stripped), as
//! qemu's secret objects and cryptsetup's key files use them.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use qvet_image::Key;
use zeroize::Zeroizing;

/// Environment variable naming a passphrase file.
pub(crate) const ENV: &str = "QVET_PASSPHRASE_FILE";
/// Largest passphrase file read (cryptsetup's default key-file limit is 8 MiB).
const MAX_KEY_FILE: u64 = 8 << 20;

/// The file a qemu `secret` object names: `secret,id=ID,file=FILE[,format=raw]`.
fn object_file(spec: &str) -> Result<PathBuf> {
    let mut parts = spec.split(',');
    let kind = parts.next().unwrap_or("");
    if kind != "secret" && kind != "qom-type=secret" {
        bail!("--object '{kind}': only secret objects are accepted");
    }
    let mut file = None;
    for p in parts {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        match k {
            "id" => {}
            "file" => file = Some(PathBuf::from(v)),
            "format" if v == "raw" => {}
            "data" => bail!(
                "--object secret: data= puts the passphrase on the command line; qvet only takes file="
            ),
            _ => bail!("--object secret: '{k}' is not supported (use id=ID,file=FILE)"),
        }
    }
    file.with_context(|| "--object secret needs file=FILE")
}

/// Reads at most [`MAX_KEY_FILE`] bytes. `hint` sizes the buffer up front so
/// that growing it leaves no unzeroed copy of the passphrase behind.
fn read_limited(mut r: impl Read, what: &Path, hint: u64) -> Result<Zeroizing<Vec<u8>>> {
    let cap = usize::try_from(hint.min(MAX_KEY_FILE).saturating_add(1)).unwrap_or(4096);
    let mut buf = Zeroizing::new(Vec::with_capacity(cap.max(4096)));
    r.by_ref()
        .take(MAX_KEY_FILE + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading passphrase from '{}'", what.display()))?;
    if u64::try_from(buf.len()).unwrap_or(u64::MAX) > MAX_KEY_FILE {
        bail!("passphrase file '{}' is larger than 8 MiB", what.display());
    }
    Ok(buf)
}

fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    if path == Path::new("-") {
        return read_limited(std::io::stdin().lock(), Path::new("standard input"), 4096);
    }
    let f = std::fs::File::open(path)
        .with_context(|| format!("opening passphrase file '{}'", path.display()))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    read_limited(f, path, len)
}

/// The key for these options, if any source names one.
pub(crate) fn load(
    key_file: Option<&Path>,
    objects: &[String],
    slot: Option<u8>,
) -> Result<Option<Key>> {
    let file = match (key_file, objects.first()) {
        (Some(f), _) => Some(f.to_path_buf()),
        (None, Some(o)) => {
            if objects.len() > 1 {
                bail!("only one --object secret is accepted");
            }
            Some(object_file(o)?)
        }
        (None, None) => std::env::var_os(ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
    };
    let Some(file) = file else {
        if slot.is_some() {
            bail!("--key-slot needs a passphrase (--key-file, --object secret or {ENV})");
        }
        return Ok(None);
    };
    let mut pass = read_key_file(&file)?;
    // Moved, not copied, into the key (which zeroizes it on drop).
    let bytes = std::mem::take(&mut *pass);
    Ok(Some(Key::new(bytes).with_slot(slot.map(usize::from))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_objects() {
        assert_eq!(
            object_file("secret,id=sec0,file=/k").unwrap(),
            PathBuf::from("/k")
        );
        assert!(object_file("secret,id=sec0,data=hunter2").is_err());
        assert!(object_file("secret,id=sec0").is_err());
        assert!(object_file("iothread,id=x").is_err());
    }
}
