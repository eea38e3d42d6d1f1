"""The MLflow pyfunc model, logged as code (MLflow "models from code"), so loading it
unpickles nothing: a DataFrame with a `text` column in; label and class probabilities out."""

from __future__ import annotations

import mlflow
import pandas as pd


class TextClassifierModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from bertpipe.inference import Classifier

        self.classifier = Classifier.load(context.artifacts["checkpoint"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        texts = model_input["text"] if isinstance(model_input, pd.DataFrame) else model_input
        return self.classifier.predict_frame([str(t) for t in texts])


mlflow.models.set_model(TextClassifierModel())
