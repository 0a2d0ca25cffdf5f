"""Layer 2: configs and presets (data), the DeepLab v3+/MobileNet-v2 builder, the atrous-depthwise patch, the summary, saving models with their sidecars. Imports only edge_deeplab.core."""
