"""The built-in models (the ``zoo.models`` entry-point group): cnn, timm_net, ae, cond_ae."""
