//! The binary: parse the command line, run, exit with the contract's code. Everything else is
//! library code in `msa_doctor`.

use std::panic::AssertUnwindSafe;

fn main() {
    // One TLS stack for the whole process (reqwest and kube both use rustls with ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A panic inside a check is reported as that check's `error`; keep the default hook's
    // "panicked at" noise off the terminal.
    std::panic::set_hook(Box::new(|_| {}));
    let cli = match msa_doctor::cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                msa_doctor::exit_code::USAGE
            } else {
                0
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("msa-doctor: cannot start the async runtime: {e}");
            std::process::exit(msa_doctor::exit_code::ERROR);
        }
    };
    let code = match std::panic::catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(msa_doctor::app::main(cli))
    })) {
        Ok(code) => code,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            eprintln!("msa-doctor: internal error (a bug, please report it): {what}");
            msa_doctor::exit_code::ERROR
        }
    };
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    std::process::exit(code);
}
