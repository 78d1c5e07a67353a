"""Training and evaluation of the scoring models (offline only).

Heavy libraries (lightgbm, scikit-learn, onnx, onnxmltools) are imported here and nowhere on the
serving path: ``dsp.scoring.model`` needs only onnxruntime and numpy.
"""
