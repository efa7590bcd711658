"""The numbers of the tiny LTX-2 checkpoint and its tiny Gemma-3 text encoder.

The tiny model exists so that every stage runs end to end on a CPU in seconds, through the
same ltx-core loaders a real 19B checkpoint goes through. So the *layout* is the real one
(the ``config`` JSON in the safetensors header with the keys ltx-core's configurators read,
the real key prefixes, a Gemma folder with config, weights and tokenizer), and only widths
and depths shrink. Widths that other code assumes stay real: 128 video latent channels,
audio latents of 8 channels x 16 mel bins, a 64-bin 16 kHz log-mel with hop 160, 128
learnable connector registers (hence token counts that are multiples of 128).

Shape couplings honoured here (ltx-core reshapes rather than checks, so a mismatch fails
deep inside a forward pass):

- caption_channels = Gemma hidden size = connector heads x head dim (the V1 feature
  extractor projects to the Gemma width; the transformer's caption projection takes it);
- cross_attention_dim = video inner dim, audio_cross_attention_dim = audio inner dim;
- audio VAE ``ch`` = z_channels x mel_bins / 4 (its per-channel statistics normalise the
  patchified [T, 8 x 16] latent with ``ch`` entries);
- the vocoder's input is 2 x 64 mel bins, its upsampling product 240 (100 mel frames/s to
  24 kHz).
"""

from __future__ import annotations

from typing import Any

from aiprod_recipes.names import MODEL_AUDIO_RATE

VIDEO_LATENT_CHANNELS = 128
AUDIO_LATENT_CHANNELS = 8
AUDIO_LATENT_MEL_BINS = 16
AUDIO_MEL_BINS = 64
AUDIO_HOP_LENGTH = 160
AUDIO_N_FFT = 1024
VOCODER_SAMPLE_RATE = 24_000

GEMMA_HIDDEN = 64
GEMMA_LAYERS = 2
GEMMA_HEADS = 2
GEMMA_KV_HEADS = 1
GEMMA_HEAD_DIM = 32
GEMMA_INTERMEDIATE = 128

VIDEO_HEADS = 2
VIDEO_HEAD_DIM = 32
AUDIO_HEADS = 2
AUDIO_HEAD_DIM = 16
CONNECTOR_HEADS = 2
CONNECTOR_HEAD_DIM = GEMMA_HIDDEN // CONNECTOR_HEADS


def transformer_config(num_layers: int) -> dict[str, Any]:
    """The ``transformer`` section: every key LTXModelConfigurator checks or reads."""
    return {
        "_class_name": "AVTransformer3DModel",
        "activation_fn": "gelu-approximate",
        "attention_bias": True,
        "attention_head_dim": VIDEO_HEAD_DIM,
        "attention_type": "default",
        "audio_attention_head_dim": AUDIO_HEAD_DIM,
        "audio_cross_attention_dim": AUDIO_HEADS * AUDIO_HEAD_DIM,
        "audio_in_channels": AUDIO_LATENT_CHANNELS * AUDIO_LATENT_MEL_BINS,
        "audio_num_attention_heads": AUDIO_HEADS,
        "audio_out_channels": AUDIO_LATENT_CHANNELS * AUDIO_LATENT_MEL_BINS,
        "audio_positional_embedding_max_pos": [20],
        "av_ca_timestep_scale_multiplier": 1000,
        "av_cross_ada_norm": True,
        "caption_channels": GEMMA_HIDDEN,
        "connector_attention_head_dim": CONNECTOR_HEAD_DIM,
        "connector_num_attention_heads": CONNECTOR_HEADS,
        "connector_num_layers": 1,
        "connector_positional_embedding_max_pos": [4096],
        "cross_attention_dim": VIDEO_HEADS * VIDEO_HEAD_DIM,
        "cross_attention_norm": True,
        "double_self_attention": False,
        "dropout": 0.0,
        "frequencies_precision": "float64",
        "in_channels": VIDEO_LATENT_CHANNELS,
        "norm_elementwise_affine": False,
        "norm_eps": 1e-06,
        "num_attention_heads": VIDEO_HEADS,
        "num_embeds_ada_norm": 1000,
        "num_layers": num_layers,
        "only_cross_attention": False,
        "out_channels": VIDEO_LATENT_CHANNELS,
        "positional_embedding_max_pos": [20, 2048, 2048],
        "positional_embedding_theta": 10000.0,
        "positional_embedding_type": "rope",
        "qk_norm": "rms_norm",
        "rope_type": "split",
        "share_ff": False,
        "standardization_norm": "rms_norm",
        "timestep_scale_multiplier": 1000,
        "upcast_attention": False,
        "use_audio_video_cross_attention": True,
        "use_linear_projection": False,
        "use_middle_indices_grid": True,
    }


def video_vae_config() -> dict[str, Any]:
    """The ``vae`` section: patch 4 plus three 2x2x2 compressions = 8x time, 32x space.

    Zero spatial padding (the decoder's default is reflect) lets a 1 x 1 latent (32 px)
    decode; reflect padding needs at least 2 latent cells per side.
    """
    return {
        "_class_name": "CausalVideoAutoencoder",
        "dims": 3,
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": VIDEO_LATENT_CHANNELS,
        "patch_size": 4,
        "norm_layer": "pixel_norm",
        "latent_log_var": "uniform",
        "spatial_padding_mode": "zeros",
        "causal_decoder": False,
        "timestep_conditioning": False,
        "decoder_base_channels": 4,
        "encoder_blocks": [["compress_all_res", {"multiplier": 1}]] * 3,
        "decoder_blocks": [["compress_all", {"multiplier": 2, "residual": True}]] * 3,
    }


def audio_vae_config() -> dict[str, Any]:
    """The ``audio_vae`` section: 2 halvings of (time, mel) -> 8 x 16 latents at 25 Hz."""
    z_channels = AUDIO_LATENT_CHANNELS
    return {
        "model": {
            "params": {
                "sampling_rate": MODEL_AUDIO_RATE,
                "ddconfig": {
                    "ch": z_channels * AUDIO_MEL_BINS // 4,
                    "ch_mult": [1, 1, 1],
                    "num_res_blocks": 0,
                    "attn_resolutions": [],
                    "resolution": 256,
                    "z_channels": z_channels,
                    "double_z": True,
                    "in_channels": 2,
                    "out_ch": 2,
                    "mel_bins": AUDIO_MEL_BINS,
                    "norm_type": "pixel",
                    "causality_axis": "height",
                    "dropout": 0.0,
                    "mid_block_add_attention": False,
                    "attn_type": "vanilla",
                    "resamp_with_conv": True,
                },
            }
        },
        "preprocessing": {
            "stft": {"hop_length": AUDIO_HOP_LENGTH, "filter_length": AUDIO_N_FFT, "causal": True},
            "mel": {"n_mel_channels": AUDIO_MEL_BINS},
        },
    }


def vocoder_config() -> dict[str, Any]:
    """The ``vocoder`` section (pre-2.3 flat layout): 6 x 5 x 8 = 240x upsampling."""
    return {
        "resblock": "1",
        "stereo": True,
        "upsample_rates": [6, 5, 8],
        "upsample_kernel_sizes": [12, 11, 16],
        "upsample_initial_channel": 32,
        "resblock_kernel_sizes": [3],
        "resblock_dilation_sizes": [[1, 3, 5]],
        "output_sampling_rate": VOCODER_SAMPLE_RATE,
    }


def ltx_config(num_layers: int) -> dict[str, Any]:
    """The whole ``config`` JSON stored in the checkpoint header."""
    return {
        "transformer": transformer_config(num_layers),
        "vae": video_vae_config(),
        "audio_vae": audio_vae_config(),
        "vocoder": vocoder_config(),
    }


GEMMA_SPECIAL_PIECES = {
    "pad": "<pad>",
    "eos": "<eos>",
    "bos": "<bos>",
    "unk": "<unk>",
}
GEMMA_USER_PIECES = (
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
)
GEMMA_VOCAB_SIZE = 512


def gemma_config(vocab_size: int, image_token_id: int, boi_id: int, eoi_id: int) -> dict[str, Any]:
    """A Gemma-3 ``config.json``: the fields of ltx-core's Gemma3ConfigData, shrunk."""
    return {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "boi_token_index": boi_id,
        "eoi_token_index": eoi_id,
        "image_token_index": image_token_id,
        "eos_token_id": [1],
        "mm_tokens_per_image": 4,
        "initializer_range": 0.02,
        "torch_dtype": "bfloat16",
        "text_config": {
            "model_type": "gemma3_text",
            "hidden_size": GEMMA_HIDDEN,
            "intermediate_size": GEMMA_INTERMEDIATE,
            "num_hidden_layers": GEMMA_LAYERS,
            "num_attention_heads": GEMMA_HEADS,
            "num_key_value_heads": GEMMA_KV_HEADS,
            "head_dim": GEMMA_HEAD_DIM,
            "query_pre_attn_scalar": GEMMA_HEAD_DIM,
            "vocab_size": vocab_size,
            "max_position_embeddings": 4096,
            "sliding_window": 256,
            "sliding_window_pattern": 2,
            "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
            "rope_theta": 1000000,
            "rope_local_base_freq": 10000,
            "torch_dtype": "bfloat16",
        },
        "vision_config": {
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
            "vision_use_head": False,
            "torch_dtype": "bfloat16",
        },
    }


GEMMA_PREPROCESSOR_CONFIG: dict[str, Any] = {
    "image_processor_type": "Gemma3ImageProcessor",
    "processor_class": "Gemma3Processor",
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "do_pan_and_scan": False,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "image_seq_length": 4,
    "resample": 2,
    "rescale_factor": 0.00392156862745098,
    "size": {"height": 32, "width": 32},
}

TOKENIZER_CORPUS = (
    "a red fox runs across a snowy field at dawn",
    "the camera slowly pans over a busy city street at night with neon lights",
    "a woman speaks to the camera in a quiet room, soft daylight from a window",
    "close-up of hands playing a piano, warm light, shallow depth of field",
    "waves crash on a rocky shore while seagulls call overhead",
    "a man walks his dog through a park in autumn, leaves falling",
    "drone shot of mountains covered in clouds, golden hour",
    "a cat sits on a windowsill watching the rain, ambient sound of raindrops",
    "two people talk and laugh at a cafe table, street noise in the background",
    "a car drives along a coastal road, engine humming, sun setting over the sea",
    "slow motion of water splashing into a glass, bright studio lighting",
    "a child blows out candles on a birthday cake as friends cheer",
    "The quick brown fox jumps over the lazy dog. 0123456789 !?.,;:'\"()-",
)
