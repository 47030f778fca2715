//! The console's corpus upload, as `POST /api/v1/corpora` and the upload page read it: the multipart
//! form (`server::api::read_upload`, through axum's extractor), the uploaded files held in memory
//! (`app::corpus::Uploads`), and each file read as the ingest reads it (`corpus::reader::read_file`,
//! JSONL told from text by the uploaded name).
//!
//! The input is the request body of a `multipart/form-data` request with the boundary
//! `lethe-fuzz-boundary`.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request};
use lethe::app::corpus::Uploads;
use lethe::corpus::ingest::validate_name;
use lethe::corpus::reader::read_file;
use lethe::server::api::read_upload;
use lethe_fuzz::fresh_dir;
use libfuzzer_sys::fuzz_target;

const BOUNDARY: &str = "lethe-fuzz-boundary";

fuzz_target!(|data: &[u8]| {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    });
    let upload = runtime.block_on(async {
        let request = Request::builder()
            .method("POST")
            .uri("/api/v1/corpora")
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(Body::from(data.to_vec()))
            .expect("a well-formed request");
        let form = Multipart::from_request(request, &()).await.ok()?;
        read_upload(form).await.ok()
    });
    let Some((opts, files)) = upload else {
        return;
    };
    assert!(
        !opts.name.is_empty(),
        "an upload without a corpus name was accepted"
    );
    let _ = validate_name(&opts.name);
    let Ok(held) = Uploads::new_in(&fresh_dir("upload"), files) else {
        return;
    };
    for path in &held.paths {
        let _ = read_file(path, &opts.read, &mut |_doc| Ok(()));
    }
});
