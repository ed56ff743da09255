//! From a solved target to an image: the config file (the base image's platform and history,
//! the stage's runtime config and history with their times) and the layer list, ready for
//! [`strata_store::Store::commit_image`].

use crate::local::Fs;
use strata_graph::{Graph, NodeId, Op, Target};
use strata_store::{
    History, ImageConfigFile, NewImage, Platform, Reference, RootFs, Store, StoreError,
};

/// The image ID the target's stage was built `FROM`, if it was built on an image.
pub fn base_image_id(graph: &Graph, target: &Target) -> Option<String> {
    let mut id: NodeId = target.node;
    loop {
        let node = graph.node(id);
        match &node.op {
            Op::Image(src) => return Some(src.id.clone()),
            Op::Scratch | Op::Context { .. } => return None,
            _ => id = *node.inputs.first()?,
        }
    }
}

/// Builds the image to commit for `target`, whose filesystem solved to `fs`.
///
/// Times: with `source_date_epoch`, every new history entry and the config are stamped with
/// it. Otherwise a layer's entry gets the time its layer was made (from the cache record on a
/// hit), a config-only entry the time of the layer before it, and the config the time of the
/// last entry; so a fully cached rebuild commits the very same image.
pub fn new_image(
    store: &Store,
    graph: &Graph,
    target: &Target,
    fs: &Fs,
    platform: &Platform,
    source_date_epoch: Option<i64>,
    tags: Vec<Reference>,
) -> Result<NewImage, StoreError> {
    let base = base_image_id(graph, target)
        .map(|id| store.image(&id))
        .transpose()?;
    let mut history: Vec<History> = Vec::new();
    let (os, architecture, variant) = match &base {
        Some(image) => {
            let layers = image.layers.len();
            let mut base_history = image.config.history.clone();
            let listed = base_history.iter().filter(|h| !h.empty_layer).count();
            // A base without history for some of its layers (an imported tarball made
            // elsewhere) gets an entry per unlisted layer, so entries and layers still pair up.
            for _ in listed..layers {
                base_history.insert(0, History::default());
            }
            history.extend(base_history);
            (
                image.config.os.clone(),
                image.config.architecture.clone(),
                image.config.variant.clone(),
            )
        }
        None => (
            platform.os.clone(),
            platform.arch.clone(),
            (!platform.variant.is_empty()).then(|| platform.variant.clone()),
        ),
    };
    let epoch = source_date_epoch.and_then(|s| jiff::Timestamp::from_second(s).ok());
    let base_layers = fs.layers.len() - target.history.iter().filter(|h| !h.empty_layer).count();
    let mut layer_times = fs.created.iter().skip(base_layers).map(|t| {
        t.and_then(|t| jiff::Timestamp::try_from(t).ok())
            .unwrap_or_else(jiff::Timestamp::now)
    });
    let base_created = base
        .as_ref()
        .and_then(|b| b.config.created.as_deref())
        .and_then(|c| c.parse::<jiff::Timestamp>().ok());
    let mut last = base_created.unwrap_or_else(jiff::Timestamp::now);
    for h in &target.history {
        if !h.empty_layer {
            last = layer_times.next().unwrap_or(last);
        }
        let created = epoch.unwrap_or(last).to_string();
        history.push(History {
            created: Some(created),
            created_by: Some(h.created_by.clone()),
            comment: h.comment.clone(),
            empty_layer: h.empty_layer,
            ..History::default()
        });
    }
    let created = epoch.unwrap_or(last).to_string();
    let config = ImageConfigFile {
        created: Some(created),
        author: target.author.clone(),
        architecture,
        variant,
        os,
        config: Some(
            serde_json::to_value(&target.config).expect("an image config is plain JSON data"),
        ),
        rootfs: RootFs::default(),
        history,
        extra: Default::default(),
    };
    Ok(NewImage {
        config,
        layers: fs.layers.clone(),
        tags,
    })
}
