using System.Text;

namespace NativeVlm.Text;

/// <summary>
/// tokenizer.json's normalizer: Unicode normalization forms, applied in order (a Sequence of them).
/// .NET normalizes with the system ICU's Unicode tables; Hugging Face's tokenizers use an older crate's,
/// so combining marks assigned since (U+0898, Unicode 14) can be reordered where Hugging Face leaves them.
/// </summary>
internal sealed class UnicodeNormalizer(IReadOnlyList<NormalizationForm> forms)
{
    public string Normalize(string text)
    {
        foreach (NormalizationForm form in forms)
        {
            text = text.Normalize(form);
        }
        return text;
    }
}
