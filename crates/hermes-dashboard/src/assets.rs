//! The page, compiled into the binary: no build step, no CDN, nothing fetched
//! from anywhere but this dashboard.

pub const INDEX: &str = include_str!("../assets/index.html");
pub const APP_JS: &str = include_str!("../assets/app.js");
pub const APP_CSS: &str = include_str!("../assets/app.css");
