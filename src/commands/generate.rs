//! `kvrun completions SHELL` and `kvrun man`: generated from the command line's own definition.

use clap::CommandFactory as _;

use super::print;
use crate::cli::Cli;
use crate::error::Error;

/// A completion script for `shell`.
pub(crate) fn completions(shell: clap_complete::Shell) -> Result<(), Error> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "kvrun", &mut script);
    print(&script)
}

/// The man page, in roff.
pub(crate) fn man() -> Result<(), Error> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| Error::Internal(format!("cannot render the man page: {e}")))?;
    print(&page)
}
