import os
import tempfile

data_path = os.environ.get("WEBUI_DOUBLE_DATA", tempfile.gettempdir())
models_path = os.path.join(data_path, "models")
