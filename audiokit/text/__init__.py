"""Text side of audiokit: token lists, tokenizers (sentencepiece, char) and normalisation.

from audiokit.text import load_tokenizer
tok = load_tokenizer("exp/tokenizer")      # a dir written by `audiokit tokenizer train`
ids = tok.encode("HELLO WORLD"); tok.decode(ids)
"""

from audiokit.text.char_tokenizer import CharTokenizer
from audiokit.text.sentencepiece_tokenizer import SentencePieceTokenizer, train_sentencepiece
from audiokit.text.token_list import BLANK, SOS_EOS, UNK, TokenList
from audiokit.text.tokenizer import Tokenizer, load_tokenizer, read_training_text

__all__ = [
    "BLANK",
    "SOS_EOS",
    "UNK",
    "CharTokenizer",
    "SentencePieceTokenizer",
    "TokenList",
    "Tokenizer",
    "load_tokenizer",
    "read_training_text",
    "train_sentencepiece",
]
