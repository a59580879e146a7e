using System.Text;
using NativeVlm.Demo;
using NativeVlm.Generation;
using NativeVlm.Text;
using Xunit;

namespace NativeVlm.Tests.Generation;

/// <summary>
/// Streaming text token by token with the demo tokenizer, whose tokens are single UTF-8 bytes, so a
/// character outside ASCII arrives over several tokens.
/// </summary>
public sealed class TokenStreamerTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly ByteLevelBpeTokenizer _tokenizer;

    public TokenStreamerTests()
    {
        DemoSnapshot.Create(_dir.Root, seed: 0);
        _tokenizer = ByteLevelBpeTokenizer.Load(_dir.Root);
    }

    [Fact]
    public void A_character_split_across_tokens_is_held_back_until_its_last_byte()
    {
        var streamer = new TokenStreamer(_tokenizer);
        int[] ids = _tokenizer.Encode("é", addSpecialTokens: false);
        Assert.Equal(Encoding.UTF8.GetByteCount("é"), ids.Length); // two byte tokens

        Assert.Equal("", streamer.Push(ids[0]));
        Assert.Equal("é", streamer.Push(ids[1]));
    }

    [Fact]
    public void The_pieces_join_into_the_decoded_text_without_special_tokens()
    {
        const string text = "Red — 红色 🟥.";
        int[] ids = [.. _tokenizer.Encode(text, addSpecialTokens: false), _tokenizer.TokenToId(DemoSnapshot.EndOfUtterance)!.Value];
        var streamer = new TokenStreamer(_tokenizer);

        var pieces = ids.Select(streamer.Push).ToList();
        pieces.Add(streamer.Flush());

        Assert.Equal(text, string.Concat(pieces));
        Assert.DoesNotContain(pieces, piece => piece.Contains('\uFFFD'));
    }

    [Fact]
    public void Flush_gives_out_the_replacement_of_bytes_that_never_completed()
    {
        var streamer = new TokenStreamer(_tokenizer);
        int firstByteOfE = _tokenizer.Encode("é", addSpecialTokens: false)[0];

        Assert.Equal("a", streamer.Push(_tokenizer.Encode("a", addSpecialTokens: false)[0]));
        Assert.Equal("", streamer.Push(firstByteOfE));
        Assert.Equal("\uFFFD", streamer.Flush());
    }

    public void Dispose() => _dir.Dispose();
}
