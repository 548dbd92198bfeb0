//! Decodes listed LFW images with facegate's decoder into lossless PNGs, so the
//! dlib reference script sees exactly the pixels the pipeline sees.
//! Usage: decode_to_png <lfw.tgz|dir> <list> <out-dir>

use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, lfw, list, out] = &args[..] else { return Err("usage: decode_to_png <lfw.tgz|dir> <list> <out-dir>".into()) };
    let data = facegate_lfw::Dataset::open(std::path::Path::new(lfw))?;
    for rel in std::fs::read_to_string(list)?.split_whitespace() {
        let img = decode_image(&data.read(rel)?, DEFAULT_MAX_PIXELS)?;
        let path = std::path::Path::new(out).join(format!("{rel}.png"));
        std::fs::create_dir_all(path.parent().unwrap())?;
        img.save(&path)?;
    }
    Ok(())
}
