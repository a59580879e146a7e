using NativeVlm.Text;

namespace NativeVlm.Generation;

/// <summary>
/// Turns one row's tokens into text as they arrive, as transformers' TextStreamer does: the tokens so
/// far are decoded together (skipping special tokens, as batch_decode(skip_special_tokens=True)), and
/// only the text past what was already given out is returned. A UTF-8 character whose bytes are split
/// across tokens decodes to U+FFFD until its last byte arrives, so trailing U+FFFD are held back until
/// the next token or <see cref="Flush"/>; what was given out is therefore always a prefix of the final text.
/// Decoding everything again at each token costs O(tokens²) bytes over a generation: microseconds next
/// to a decoder step for any max_new_tokens a VLM answer needs.
/// </summary>
public sealed class TokenStreamer(ByteLevelBpeTokenizer tokenizer)
{
    private readonly List<int> _tokens = [];
    private int _written;

    /// <summary>Every token pushed so far, decoded.</summary>
    public string Text => tokenizer.Decode(_tokens, skipSpecialTokens: true);

    /// <summary>Adds a token; returns the text that is now certain and was not returned before (possibly "").</summary>
    public string Push(int tokenId)
    {
        _tokens.Add(tokenId);
        string text = Text;
        int stable = text.Length;
        while (stable > _written && text[stable - 1] == '\uFFFD')
        {
            stable--;
        }
        return Take(text, stable);
    }

    /// <summary>The rest of the text, replacement characters of bytes that never completed included.</summary>
    public string Flush()
    {
        string text = Text;
        return Take(text, text.Length);
    }

    private string Take(string text, int end)
    {
        string chunk = end > _written ? text[_written..end] : "";
        _written = Math.Max(_written, end);
        return chunk;
    }
}
