//! Static files compiled into the binary: the stylesheet, the small script that wires the UI, and
//! vendored htmx. URLs carry a fingerprint of the contents, so browsers may cache them forever.

use std::sync::LazyLock;

pub struct Asset {
    pub bytes: &'static [u8],
    pub content_type: &'static str,
}

const CSS: &[u8] = include_bytes!("../assets/app.css");
const JS: &[u8] = include_bytes!("../assets/app.js");
const HTMX: &[u8] = include_bytes!("../assets/vendor/htmx-2.0.11.min.js");
const ICON: &[u8] = include_bytes!("../assets/icon.svg");

/// The vendored htmx, under a name that carries its version.
pub const HTMX_PATH: &str = "vendor/htmx-2.0.11.min.js";

/// The file served at `/assets/<path>`.
pub fn get(path: &str) -> Option<Asset> {
    let (bytes, content_type) = match path {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        "icon.svg" => (ICON, "image/svg+xml"),
        HTMX_PATH => (HTMX, "text/javascript; charset=utf-8"),
        _ => return None,
    };
    Some(Asset {
        bytes,
        content_type,
    })
}

/// A short fingerprint of every asset, appended as `?v=` so a new build is fetched anew.
pub fn version() -> &'static str {
    static V: LazyLock<String> = LazyLock::new(|| {
        // FNV-1a: enough to tell builds apart; this is not a security boundary.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in CSS.iter().chain(JS).chain(HTMX).chain(ICON) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{:08x}", h >> 32)
    });
    &V
}

#[cfg(test)]
mod tests {
    #[test]
    fn assets_resolve() {
        assert!(super::get("app.css").is_some());
        assert!(super::get(super::HTMX_PATH).is_some());
        assert!(super::get("../Cargo.toml").is_none());
        assert_eq!(super::version().len(), 8);
    }
}
