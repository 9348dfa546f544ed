"""A trained model to share and ship: a safetensors folder with config.json and a model card
(`pretrained`, `model_card`), a jax.export StableHLO artifact (`stablehlo`), an ONNX file
(`onnx_export`)."""
