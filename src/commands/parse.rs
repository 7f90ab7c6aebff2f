//! `kvrun parse ID...`: each identifier as the Azure SDK's `parseKeyVaultSecretIdentifier` reads
//! it, one JSON object per line; offline.

use super::print;
use crate::error::{self, Error};
use crate::reference;

/// `kvrun parse`: one JSON object per identifier; errors after all of them.
pub(crate) fn parse_ids(ids: &[String]) -> Result<(), Error> {
    let mut first_error = None;
    for id in ids {
        match reference::parse_secret_identifier(id) {
            Ok(parsed) => {
                let mut line =
                    serde_json::to_string(&parsed).map_err(|e| Error::Internal(e.to_string()))?;
                line.push('\n');
                print(line.as_bytes())?;
            }
            Err(e) => {
                let err = Error::BadInput {
                    location: id.clone(),
                    message: e.message,
                    hint: e.hint,
                };
                if first_error.is_some() {
                    eprintln!("{}", error::Report(&err));
                } else {
                    first_error = Some(err);
                }
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}
