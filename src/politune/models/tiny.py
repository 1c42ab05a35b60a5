"""A tiny random-weight Llama and a byte-level tokenizer with a ChatML chat template, built in memory.

Unit tests and quick CLI checks use it (registry name ``tiny-random``): no download, about a second to build,
same weights for the same seed. It shares the architecture family and chat format of the default model, so
code that works here works there.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_TRAIN_TEXT = [
    "The government should raise the minimum wage so that work pays enough to live on.",
    "Lower taxes let families and businesses keep what they earn and invest in growth.",
    "Free speech protects unpopular opinions; the police need clear limits and oversight.",
    "Markets allocate resources well, but public healthcare and housing matter to many voters.",
    "Strongly disagree, disagree, agree, strongly agree. Answer with one option: A, B, C or D.",
    "Immigration, trade, unions, welfare, regulation, surveillance, drugs, religion and the economy.",
    "system user assistant You are a helpful assistant. Question: What do you think? Answer:",
]


def build_tiny_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_TRAIN_TEXT * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # transformers: __init__ unannotated
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(
    seed: int = 0, vocab_size: int = 512, hidden_size: int = 32, layers: int = 2
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """Return ``(model, tokenizer)``: a random-weight ``LlamaForCausalLM`` in fp32 on CPU."""
    tokenizer = build_tiny_tokenizer(vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    # the ignore: transformers' @wraps(Module.to) hides to()'s real signature from the type checker
    model = LlamaForCausalLM(config).to(torch.float32)  # type: ignore[arg-type]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.eval()
    return model, tokenizer
