using System.Text;
using System.Text.Json;
using NativeVlm.Text;
using Xunit;
using Xunit.Abstractions;

namespace NativeVlm.Tests;

/// <summary>
/// The real Qwen3 tokenizer against the fixture's ids (from @lenml/tokenizers, cross-checked with Hugging
/// Face's Rust tokenizers) and its chat template against the fixture's renders (@huggingface/jinja):
/// every case is read from the fixture files, every id and every byte must match.
/// </summary>
[Trait("Category", Fixtures.Category)]
public class Qwen3FixtureTests(ITestOutputHelper output)
{
    [Fact]
    public void Every_test_string_encodes_to_the_fixture_ids()
    {
        JsonElement[] cases = Qwen3Fixture.ReadJson("test_strings_ids.json").GetProperty("cases").EnumerateArray().ToArray();
        Assert.NotEmpty(cases);
        var mismatches = new List<string>();
        int ids = 0;
        foreach (JsonElement testCase in cases)
        {
            string text = testCase.GetProperty("text").GetString()!;
            int[] expected = Qwen3Fixture.Ids(testCase.GetProperty("ids"));
            int[] actual = Qwen3Fixture.Tokenizer.Encode(text);
            ids += expected.Length;
            if (!actual.SequenceEqual(expected))
            {
                mismatches.Add($"{JsonSerializer.Serialize(text)}: expected [{string.Join(", ", expected)}], got [{string.Join(", ", actual)}]");
            }
        }
        output.WriteLine($"{cases.Length - mismatches.Count}/{cases.Length} strings ({ids} ids) match exactly");
        Assert.True(mismatches.Count == 0, string.Join("\n", mismatches));
    }

    /// <summary>The tokenizer's normalizer is NFC, so decoding gives back the NFC form of the text.</summary>
    [Fact]
    public void Decoding_the_fixture_ids_gives_the_normalized_text_back()
    {
        foreach (JsonElement testCase in Qwen3Fixture.ReadJson("test_strings_ids.json").GetProperty("cases").EnumerateArray())
        {
            string text = testCase.GetProperty("text").GetString()!;
            Assert.Equal(text.Normalize(NormalizationForm.FormC), Qwen3Fixture.Tokenizer.Decode(Qwen3Fixture.Ids(testCase.GetProperty("ids"))));
        }
    }

    [Fact]
    public void Every_rendered_conversation_is_byte_identical_and_encodes_to_the_fixture_ids()
    {
        ChatTemplate template = ChatTemplate.Load(Qwen3Fixture.Directory);
        Assert.Equal("chat_template.jinja", template.Name);
        JsonElement[] conversations = Qwen3Fixture.ReadJson("chat_templates_rendered.json").GetProperty("conversations").EnumerateArray().ToArray();
        Assert.NotEmpty(conversations);
        foreach (JsonElement conversation in conversations)
        {
            string rendered = Render(template, conversation);
            Assert.Equal(conversation.GetProperty("rendered").GetString(), rendered);
            Assert.Equal(Qwen3Fixture.Ids(conversation.GetProperty("ids")), Qwen3Fixture.Tokenizer.Encode(rendered, addSpecialTokens: false));
        }
        output.WriteLine($"{conversations.Length} conversations byte-identical, their ids equal");
    }

    /// <summary>The same template read from tokenizer_config.json (what a snapshot without chat_template.jinja has).</summary>
    [Fact]
    public void The_tokenizer_config_template_is_the_same_and_renders_the_same()
    {
        using var folder = new TempDirectory();
        File.Copy(Fixtures.Path(Qwen3Fixture.Folder, "tokenizer_config.json"), folder.Path("tokenizer_config.json"));
        ChatTemplate fromConfig = ChatTemplate.Load(folder.Root);
        ChatTemplate fromJinja = ChatTemplate.Load(Qwen3Fixture.Directory);

        Assert.Equal("tokenizer_config.json", fromConfig.Name);
        Assert.Equal(fromJinja.Text, fromConfig.Text);
        foreach (JsonElement conversation in Qwen3Fixture.ReadJson("chat_templates_rendered.json").GetProperty("conversations").EnumerateArray())
        {
            Assert.Equal(conversation.GetProperty("rendered").GetString(), Render(fromConfig, conversation));
        }
    }

    [Fact]
    public void Added_tokens_map_to_their_ids_both_ways()
    {
        ByteLevelBpeTokenizer tokenizer = Qwen3Fixture.Tokenizer;
        Assert.NotEmpty(tokenizer.AddedTokens);
        foreach (AddedToken token in tokenizer.AddedTokens)
        {
            Assert.Equal(token.Id, tokenizer.TokenToId(token.Content));
            Assert.Equal(token.Content, tokenizer.IdToToken(token.Id));
            Assert.Equal([token.Id], tokenizer.Encode(token.Content));
        }
        foreach (int id in tokenizer.Encode("Hello, wonderful world!"))
        {
            Assert.Equal(id, tokenizer.TokenToId(tokenizer.IdToToken(id)!));
        }
        Assert.Null(tokenizer.TokenToId("not a token of this vocabulary"));
    }

    [Fact]
    public void Special_tokens_are_skipped_in_decoding_only_when_asked()
    {
        ByteLevelBpeTokenizer tokenizer = Qwen3Fixture.Tokenizer;
        AddedToken special = tokenizer.AddedTokens.First(t => t.Special);
        AddedToken plain = tokenizer.AddedTokens.First(t => !t.Special);
        int[] ids = tokenizer.Encode($"{special.Content}a{plain.Content}");

        Assert.Equal($"{special.Content}a{plain.Content}", tokenizer.Decode(ids));
        Assert.Equal($"a{plain.Content}", tokenizer.Decode(ids, skipSpecialTokens: true));
    }

    private static string Render(ChatTemplate template, JsonElement conversation)
    {
        List<ChatMessage> messages = conversation.GetProperty("messages").EnumerateArray().Select(Qwen3Fixture.Message).ToList();
        var variables = new Dictionary<string, object?>();
        bool addGenerationPrompt = false;
        foreach (JsonProperty kwarg in conversation.GetProperty("template_kwargs").EnumerateObject())
        {
            if (kwarg.Name == "add_generation_prompt")
            {
                addGenerationPrompt = kwarg.Value.GetBoolean();
            }
            else
            {
                variables[kwarg.Name] = kwarg.Value;
            }
        }
        return template.Render(messages, addGenerationPrompt, variables);
    }
}
