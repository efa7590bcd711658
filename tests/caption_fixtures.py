"""Tiny, seeded, locally built stand-ins for caption backends (no download, no network).

`build_tiny_qwen_omni` writes a folder laid out like a real Qwen2.5-Omni checkpoint
(an Omni config with a thinker sub-config, `thinker.`-prefixed safetensors weights, a
Qwen2 tokenizer with the Omni special tokens, a Whisper feature extractor, a Qwen2-VL
image processor and the Omni chat template), so the captioner loads it exactly as it
loads the real one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# The layout of the real Omni chat template: a default system turn, then for each content
# item the vision/audio wrapper tokens around one placeholder the processor expands.
OMNI_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'audio' %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'video' %}<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SPECIAL_TOKENS = {
    "pad": "<|endoftext|>",
    "im_start": "<|im_start|>",
    "im_end": "<|im_end|>",
    "audio_token": "<|AUDIO|>",
    "audio_bos_token": "<|audio_bos|>",
    "audio_eos_token": "<|audio_eos|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
    "image_token": "<|IMAGE|>",
    "video_token": "<|VIDEO|>",
}

_CORPUS = [
    "a person walks along a beach at sunset while waves crash and gulls call",
    "a close up of hands playing a piano, soft music, warm light from a window",
    "the camera pans across a busy street; a man says hello and a car horn sounds",
    "a dog runs through tall grass, birds sing, handheld camera, bright daylight",
    "on-screen text reads welcome; a woman speaks to the camera in a quiet room",
]


def _tiny_tokenizer():
    """A byte-level BPE trained on a few sentences, wrapped as the Qwen2 fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    media = ("audio_token", "audio_bos_token", "audio_eos_token", "vision_bos_token",
             "vision_eos_token", "image_token", "video_token")
    return Qwen2TokenizerFast(
        tokenizer_object=tok,
        unk_token=None,
        bos_token=None,
        eos_token=SPECIAL_TOKENS["im_end"],
        pad_token=SPECIAL_TOKENS["pad"],
        extra_special_tokens={k: SPECIAL_TOKENS[k] for k in media},
        chat_template=OMNI_CHAT_TEMPLATE,
    )


def _tiny_config(tokenizer):
    """An Omni config with a thinker of a few thousand parameters per tower, no talker."""
    from transformers import Qwen2_5OmniConfig

    ids = {k: tokenizer.convert_tokens_to_ids(v) for k, v in SPECIAL_TOKENS.items()}
    hidden = 32
    thinker = {
        "audio_config": {
            "num_mel_bins": 128, "encoder_layers": 1, "encoder_attention_heads": 2,
            "encoder_ffn_dim": 32, "d_model": 16, "output_dim": hidden,
        },
        "vision_config": {
            "depth": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2,
            "out_hidden_size": hidden, "fullatt_block_indexes": [0],
        },
        "text_config": {
            "vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            "rope_scaling": {"mrope_section": [2, 3, 3], "rope_type": "default",
                             "type": "default"},
        },
        "audio_token_index": ids["audio_token"],
        "image_token_index": ids["image_token"],
        "video_token_index": ids["video_token"],
        "audio_start_token_id": ids["audio_bos_token"],
        "audio_end_token_id": ids["audio_eos_token"],
        "vision_start_token_id": ids["vision_bos_token"],
        "vision_end_token_id": ids["vision_eos_token"],
        "pad_token_id": ids["pad"],
        "eos_token_id": ids["im_end"],
    }
    return Qwen2_5OmniConfig(thinker_config=thinker, enable_audio_output=False)


def build_tiny_qwen_omni(folder: Path, seed: int = 0) -> Path:
    """Write a tiny random Qwen2.5-Omni checkpoint + processor pieces into `folder`."""
    import torch
    from transformers import (
        Qwen2_5OmniForConditionalGeneration,
        Qwen2VLImageProcessor,
        WhisperFeatureExtractor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tiny_tokenizer()
    config = _tiny_config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen2_5OmniForConditionalGeneration(config).eval()
    model.save_pretrained(folder, safe_serialization=True)

    tokenizer.save_pretrained(folder)
    # A real Omni folder holds one preprocessor_config.json shared by the audio feature
    # extractor and the image processor; saving each one separately would overwrite it.
    merged = {
        **WhisperFeatureExtractor(feature_size=128).to_dict(),
        **Qwen2VLImageProcessor().to_dict(),
        "processor_class": "Qwen2_5OmniProcessor",
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(merged, indent=2),
                                                     encoding="utf-8")
    (folder / "chat_template.jinja").write_text(OMNI_CHAT_TEMPLATE, encoding="utf-8")
    return folder


def tiny_media(num_frames: int = 4, size: int = 56, seconds: float = 1.0,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded frames [N, H, W, 3] uint8 and a float32 mono 16 kHz tone with noise."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(num_frames, size, size, 3), dtype=np.uint8)
    t = np.arange(int(16_000 * seconds), dtype=np.float32) / 16_000
    audio = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.01 * rng.standard_normal(t.shape)
    return frames, audio.astype(np.float32)


# --------------------------------------------------------------------------- Gemini stand-in

class FakeGeminiServer:
    """A real HTTP server on 127.0.0.1 that answers like the Gemini API at base_url.

    `replies` is a queue of (status, json body, extra headers) for generateContent calls;
    when it runs dry every call succeeds with `caption`. Requests are recorded as
    (method, path, headers, body bytes). The Files API upload/get/delete routes are
    served too, so the large-clip path runs against the same server.
    """

    def __init__(self, caption: str = "A dog runs on a beach.") -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.caption = caption
        self.replies: list[tuple[int, dict, dict[str, str]]] = []
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.file_polls = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                """Keep the test output quiet."""

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.requests.append((self.command, self.path, headers, body))
                status, payload, extra = server.route(self.command, self.path)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,),
                                       daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, method: str, path: str) -> tuple[int, dict, dict[str, str]]:
        path = path.split("?")[0]
        file = {"name": "files/clip1", "uri": f"{self.base_url}/v1beta/files/clip1",
                "mimeType": "video/mp4"}
        if path.endswith(":generateContent"):
            if self.replies:
                return self.replies.pop(0)
            return 200, {"candidates": [{"content": {"role": "model", "parts": [
                {"text": self.caption}]}, "finishReason": "STOP", "index": 0}]}, {}
        if method == "POST" and path == "/upload/v1beta/files":
            return 200, {}, {"x-goog-upload-url": f"{self.base_url}/upload/session/1"}
        if method == "POST" and path == "/upload/session/1":
            return 200, {"file": {**file, "state": "PROCESSING"}}, {
                "x-goog-upload-status": "final"}
        if method == "GET" and path == "/v1beta/files/clip1":
            self.file_polls += 1
            return 200, {**file, "state": "ACTIVE"}, {}
        if method == "DELETE" and path == "/v1beta/files/clip1":
            return 200, {}, {}
        return 404, {"error": {"code": 404, "message": f"no route {path}",
                               "status": "NOT_FOUND"}}, {}

    def __enter__(self) -> FakeGeminiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def gemini_error(status: int, message: str, name: str) -> dict:
    """The JSON body the Gemini API sends with an error status."""
    return {"error": {"code": status, "message": message, "status": name}}
