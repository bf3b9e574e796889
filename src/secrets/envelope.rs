//! One value as one armored age message. The plaintext is framed as
//! `mtp-secret-v1\n<owner>\n<name>\n<value>`, so the owner and key a value was written for
//! travel inside the encryption and are checked on every decryption.

use std::io::{Read, Write};

use secrecy::SecretString;
use zeroize::Zeroizing;

use super::names::{is_valid_name, is_valid_owner};
use super::recipients::Recipients;

const MAGIC: &str = "mtp-secret-v1";
pub(crate) const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";

/// A decrypted message: who it was written for, and the value.
pub(crate) struct Opened {
    pub owner: String,
    pub name: String,
    pub value: SecretString,
}

#[derive(Debug)]
pub(crate) enum OpenError {
    /// None of the identity's keys is a recipient of the message.
    NotARecipient,
    /// The message is damaged, or not an mtp secret. Never carries plaintext.
    Corrupt(String),
}

/// Encrypts `value` for `owner`/`name` to every recipient; returns the armored message.
pub(crate) fn seal(
    recipients: &Recipients,
    owner: &str,
    name: &str,
    value: &str,
) -> Result<String, String> {
    let mut plaintext = Zeroizing::new(Vec::with_capacity(value.len() + 64));
    plaintext.extend_from_slice(format!("{MAGIC}\n{owner}\n{name}\n").as_bytes());
    plaintext.extend_from_slice(value.as_bytes());

    let encryptor =
        age::Encryptor::with_recipients(recipients.as_age()).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(plaintext.len() * 2 + 512);
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| e.to_string())?;
    let mut writer = encryptor.wrap_output(armor).map_err(|e| e.to_string())?;
    writer.write_all(&plaintext).map_err(|e| e.to_string())?;
    writer
        .finish()
        .and_then(|armor| armor.finish())
        .map_err(|e| e.to_string())?;
    let mut armored = String::from_utf8(out).map_err(|e| e.to_string())?;
    if !armored.ends_with('\n') {
        armored.push('\n');
    }
    Ok(armored)
}

/// Decrypts an armored message and unframes it. The caller checks owner and name.
pub(crate) fn open(identity: &super::Identity, armored: &str) -> Result<Opened, OpenError> {
    let reader = age::armor::ArmoredReader::new(armored.as_bytes());
    let decryptor =
        age::Decryptor::new_buffered(reader).map_err(|e| OpenError::Corrupt(e.to_string()))?;
    let mut stream = decryptor.decrypt(identity.as_age()).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => OpenError::NotARecipient,
        other => OpenError::Corrupt(other.to_string()),
    })?;
    let mut plaintext = Zeroizing::new(Vec::new());
    stream
        .read_to_end(&mut plaintext)
        .map_err(|e| OpenError::Corrupt(e.to_string()))?;
    unframe(&plaintext)
}

fn unframe(plaintext: &[u8]) -> Result<Opened, OpenError> {
    let not_ours = || OpenError::Corrupt("not an mtp secret (no mtp-secret-v1 header)".into());
    let mut parts = plaintext.splitn(4, |b| *b == b'\n');
    let (Some(magic), Some(owner), Some(name), Some(value)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(not_ours());
    };
    if magic != MAGIC.as_bytes() {
        return Err(not_ours());
    }
    // Owner and name are shown in errors, so only ever as the strict forms we write.
    let owner = std::str::from_utf8(owner)
        .ok()
        .filter(|o| is_valid_owner(o))
        .ok_or_else(not_ours)?;
    let name = std::str::from_utf8(name)
        .ok()
        .filter(|n| is_valid_name(n))
        .ok_or_else(not_ours)?;
    let value = std::str::from_utf8(value)
        .map_err(|_| OpenError::Corrupt("the value is not UTF-8".into()))?;
    Ok(Opened {
        owner: owner.to_string(),
        name: name.to_string(),
        value: SecretString::from(value.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::path::Path;

    #[test]
    fn unframe_rejects_foreign_plaintext_without_echoing_it() {
        for text in [
            &b"hunter2"[..],
            b"mtp-secret-v1\nacme\n",
            b"mtp-secret-v2\nacme\nX\nhunter2",
            b"mtp-secret-v1\n../x\nX\nhunter2",
            b"mtp-secret-v1\nacme\nlower\nhunter2",
        ] {
            match unframe(text) {
                Err(OpenError::Corrupt(m)) => assert!(!m.contains("hunter2"), "{m}"),
                _ => panic!("accepted {:?}", String::from_utf8_lossy(text)),
            }
        }
        let ok = unframe(b"mtp-secret-v1\nacme\nX\nline1\nline2\n").unwrap();
        assert_eq!((ok.owner.as_str(), ok.name.as_str()), ("acme", "X"));
        assert_eq!(ok.value.expose_secret(), "line1\nline2\n");
    }

    #[test]
    fn seal_produces_one_armored_message_ending_in_a_newline() {
        let key = age::x25519::Identity::generate();
        let r = Recipients::parse(Path::new("r"), &key.to_public().to_string()).unwrap();
        let armored = seal(&r, "acme", "X", "v").unwrap();
        assert!(armored.starts_with(ARMOR_BEGIN), "{armored}");
        assert!(armored.ends_with("-----END AGE ENCRYPTED FILE-----\n"));
    }
}
