using System.Text;

namespace NativeVlm.Text;

/// <summary>
/// GPT-2's bytes_to_unicode: each of the 256 byte values as one printable character, so that a
/// byte-level BPE vocabulary is a set of strings. Printable Latin-1 bytes stand for themselves; the
/// others (controls, space, 0x7F-0xA0, 0xAD) take U+0100 onwards in byte order (space is 'Ġ').
/// </summary>
internal static class ByteLevelAlphabet
{
    private static readonly char[] ByteToChar = BuildByteToChar();

    private static readonly Dictionary<char, byte> CharToByte =
        Enumerable.Range(0, 256).ToDictionary(b => ByteToChar[b], b => (byte)b);

    private static char[] BuildByteToChar()
    {
        var table = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            table[b] = (char)(printable ? b : next++);
        }
        return table;
    }

    /// <summary>The character that stands for byte <paramref name="b"/> (a byte-level vocabulary's entry for it).</summary>
    public static char Symbol(byte b) => ByteToChar[b];

    /// <summary>The UTF-8 bytes of <paramref name="text"/>, one alphabet character each.</summary>
    public static string Encode(string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        return string.Create(bytes.Length, bytes, (chars, source) =>
        {
            for (int i = 0; i < source.Length; i++)
            {
                chars[i] = ByteToChar[source[i]];
            }
        });
    }

    /// <summary>
    /// Appends the bytes a token stands for, as Hugging Face's ByteLevel decoder does: a token made only
    /// of alphabet characters gives their bytes, any other token (an added token such as "&lt;think&gt; ")
    /// its own UTF-8.
    /// </summary>
    public static void AppendBytes(string token, List<byte> output)
    {
        int start = output.Count;
        foreach (char c in token)
        {
            if (!CharToByte.TryGetValue(c, out byte b))
            {
                output.RemoveRange(start, output.Count - start);
                output.AddRange(Encoding.UTF8.GetBytes(token));
                return;
            }
            output.Add(b);
        }
    }
}
