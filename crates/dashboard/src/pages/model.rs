//! What the pages derive from a view beyond what the CLI's tree shares with them
//! ([`Roles`], [`RolloutView::images_with_roles`]).

use cutover_local::api::{Roles, RolloutView};

/// Images with their roles; before any revision exists (just applied), the template's.
pub fn images(view: &RolloutView, roles: &Roles) -> Vec<(String, Vec<&'static str>)> {
    let images = view.images_with_roles(roles);
    if !images.is_empty() {
        return images;
    }
    containers(view)
        .into_iter()
        .map(|(_, image)| (image, Vec::new()))
        .collect()
}

/// Container names and images of the pod template (never their commands or environment).
pub fn containers(view: &RolloutView) -> Vec<(String, String)> {
    view.rollout
        .spec
        .template
        .spec
        .as_ref()
        .map(|p| {
            p.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}
