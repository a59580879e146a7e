namespace NativeVlm.Text;

/// <summary>
/// One entry of tokenizer.json's added_tokens: a string that is split out of the text before the
/// pre-tokenizer and BPE see it, and encoded as its own id.
/// </summary>
/// <param name="SingleWord">Matches only where no word character touches it on either side.</param>
/// <param name="LStrip">The match takes the whitespace before it.</param>
/// <param name="RStrip">The match takes the whitespace after it.</param>
/// <param name="Normalized">Matched in the normalized text (after NFC etc.) instead of the raw text.</param>
/// <param name="Special">A control token (&lt;|im_start|&gt;): decoding can skip it.</param>
public sealed record AddedToken(int Id, string Content, bool SingleWord, bool LStrip, bool RStrip, bool Normalized, bool Special);
