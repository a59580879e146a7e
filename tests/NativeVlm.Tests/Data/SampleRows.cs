using System.Text;
using NativeVlm.Data;
using Xunit;

namespace NativeVlm.Tests.Data;

/// <summary>
/// Deterministic rows of both Hugging Face layouts, varied where the readers branch: one or two
/// images, a system message, several text items, several turns, a null image path, non-ASCII text
/// (incl. a code point outside the BMP) and image bytes that are not UTF-8.
/// </summary>
internal static class SampleRows
{
    private static readonly RowLocation NoLocation = new("", -1);

    public static PreferenceRow Pair(int i)
    {
        int imageCount = i % 3 == 0 ? 2 : 1;
        var prompt = new List<ChatMessage>();
        if (i % 5 == 0)
        {
            prompt.Add(new ChatMessage("system", [ContentItem.FromText($"system {i}")]));
        }
        prompt.Add(new ChatMessage("user", [.. Enumerable.Repeat(ContentItem.ImagePlaceholder, imageCount), ContentItem.FromText($"question {i} é𠮷")]));
        IReadOnlyList<ContentItem> chosen = i % 4 == 0
            ? [ContentItem.FromText($"chosen {i}, "), ContentItem.FromText("second part")]
            : [ContentItem.FromText($"chosen {i}")];
        return new PreferenceRow(
            NoLocation,
            prompt,
            [new ChatMessage("assistant", chosen)],
            [new ChatMessage("assistant", [ContentItem.FromText($"rejected {i} 'quoted'")])],
            Enumerable.Range(0, imageCount).Select(k => Image(i, k)).ToList());
    }

    public static ConversationRow Conversation(int i)
    {
        int imageCount = i % 3 == 0 ? 2 : 1;
        var turns = Enumerable.Range(0, 1 + i % 4)
            .Select(t => new ConversationTurn(t == 1 ? "" : $"user {i}.{t} ü", $"assistant {i}.{t} 𝐀", i % 7 == 0 ? null : $"source{i % 2}"))
            .ToList();
        return new ConversationRow(NoLocation, Enumerable.Range(0, imageCount).Select(k => Image(i, k)).ToList(), turns);
    }

    /// <summary>Bytes 0x00 0xFF (not UTF-8) and the row's number; a path on second images only, as in real files.</summary>
    private static DatasetImage Image(int row, int index) =>
        new([0x00, 0xFF, .. Encoding.UTF8.GetBytes($"image {row}.{index}")], index == 0 ? null : $"img_{row}_{index}.png");

    public static void AssertSame(PreferenceRow expected, PreferenceRow actual)
    {
        AssertSame(expected.Prompt, actual.Prompt);
        AssertSame(expected.Chosen, actual.Chosen);
        AssertSame(expected.Rejected, actual.Rejected);
        AssertSame(expected.Images, actual.Images);
    }

    public static void AssertSame(ConversationRow expected, ConversationRow actual)
    {
        AssertSame(expected.Images, actual.Images);
        Assert.Equal(expected.Turns, actual.Turns);
    }

    public static void AssertSame(IReadOnlyList<ChatMessage> expected, IReadOnlyList<ChatMessage> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i].Role, actual[i].Role);
            Assert.Equal(expected[i].Content, actual[i].Content);
        }
    }

    public static void AssertSame(IReadOnlyList<DatasetImage> expected, IReadOnlyList<DatasetImage> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i].Bytes, actual[i].Bytes);
            Assert.Equal(expected[i].Path, actual[i].Path);
        }
    }
}
