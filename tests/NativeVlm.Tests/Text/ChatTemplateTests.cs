using NativeVlm.Text;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>
/// The Jinja subset against Jinja2 itself: every expected string below is what Jinja2 3.1 renders with
/// transformers' settings (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, its tojson and
/// raise_exception). Also the SmolVLM template, errors naming the template line, and where a model
/// folder's template is found.
/// </summary>
public class ChatTemplateTests
{
    /// <summary>HuggingFaceTB/SmolVLM-Instruct's chat_template (SmolVLM2's adds a video branch).</summary>
    private const string SmolVlm =
        "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
        + "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
        + "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

    private static readonly Dictionary<string, object?> Context = new()
    {
        ["a"] = false,
        ["b"] = 0,
        ["c"] = "x",
        ["d"] = new Dictionary<string, object?> { ["a"] = 1 },
        ["m"] = new Dictionary<string, object?> { ["a"] = 1 },
        ["n"] = null,
    };

    [Theory]
    // Filters
    [InlineData("{{ [1, 2]|length }}|{{ 'ab\U0001d400'|length }}|{{ {'a': 1}|count }}|{{ undefined_name|length }}",
                "2|3|1|0")]
    [InlineData("{{ 1|string ~ 'x' }}|{{ none|string }}|{{ ' a \\n'|trim }}|{{ 'xax'|trim('x') }}",
                "1x|None|a|a")]
    [InlineData("{{ 'AbC'|lower }}|{{ 'AbC'|upper }}|{{ 'uSER'|capitalize }}|{{ 'hELLO wORLD-wide (x'|title }}",
                "abc|ABC|User|Hello World-Wide (X")]
    [InlineData("{{ 'aXbX'|replace('X', 'y') }}|{{ 'aXbX'|replace('X', 'y', 1) }}",
                "ayby|aybX")]
    [InlineData("{{ ['a', 'b']|first }}|{{ ['a', 'b']|last }}|{{ []|first }}|{{ 'ab'|first }}",
                "a|b||a")]
    [InlineData("{{ [1, 2]|join(', ') }}|{{ ['a', 'b']|join }}|{{ undefined_name|default('fallback') }}|{{ ''|default('d', true) }}|{{ 'x'|d('y') }}",
                "1, 2|ab|fallback|d|x")]
    [InlineData("{{ [3, 1]|reverse|list }}|{{ 'abc'|reverse }}|{{ 'abc'|list }}|{{ {'k': 1}|items|list|length }}",
                "[1, 3]|cba|['a', 'b', 'c']|1")]
    [InlineData("{{ '3'|int + 1 }}|{{ 'q'|int }}|{{ 2.7|int }}|{{ '2.5'|float }}|{{ -3|abs }}|{{ -2.5|abs }}",
                "4|0|2|2.5|3|2.5")]
    [InlineData("{{ {'a': [1, '\u00e9', none, true, 1.5, {'b': 'x\"y\\n\\u0001'}]}|tojson }}",
                "{\"a\": [1, \"\u00e9\", null, true, 1.5, {\"b\": \"x\\\"y\\n\\u0001\"}]}")]
    [InlineData("{{ [1, {'a': []}]|tojson(indent=2) }}|{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}|{{ {}|tojson }}",
                "[\n  1,\n  {\n    \"a\": []\n  }\n]|{\"a\": 2, \"b\": 1}|{}")]
    // Tests
    [InlineData("{{ x is defined }}|{{ x is undefined }}|{{ none is none }}|{{ 'a' is string }}|{{ 1 is string }}|{{ 1 is not string }}",
                "False|True|True|True|False|True")]
    [InlineData("{{ 1 is number }}|{{ true is number }}|{{ 1 is integer }}|{{ true is integer }}|{{ 1.0 is float }}|{{ true is boolean }}",
                "True|True|True|False|True|True")]
    [InlineData("{{ true is true }}|{{ 1 is true }}|{{ false is false }}|{{ {} is mapping }}|{{ [] is sequence }}|{{ 'a' is iterable }}",
                "True|False|True|True|True|True")]
    [InlineData("{{ 3 is odd }}|{{ 4 is even }}|{{ 9 is divisibleby 3 }}|{{ 9 is divisibleby(4) }}",
                "True|True|True|False")]
    [InlineData("{{ 1 is eq 1 }}|{{ 1 is equalto 2 }}|{{ 1 is ne 2 }}|{{ 'a' is in 'abc' }}",
                "True|False|True|True")]
    // Methods
    [InlineData("{{ 'Hello'.startswith('He') }}|{{ 'Hello'.endswith('lo') }}|{{ 'Hello'.startswith('l', 2) }}|{{ 'Hello'.endswith('l', 0, 3) }}",
                "True|True|True|True")]
    [InlineData("{{ 'a b  c'.split() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a,b,c'.split(',', 1) }}|{{ ' a b '.split(none, 1) }}",
                "['a', 'b', 'c']|['a', 'b', '', 'c']|['a', 'b,c']|['a', 'b ']")]
    [InlineData("{{ '  x '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ '\\n\\nx\\n'.lstrip('\\n') }}|{{ 'x \\n'.rstrip() }}",
                "x|hi|x\n|x")]
    [InlineData("{{ 'a b'.replace(' ', '_') }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'ab'.replace('', '-') }}",
                "a_b|bba|-a-b-")]
    [InlineData("{{ 'ab'.upper() }}|{{ 'AB'.lower() }}|{{ 'aBC'.capitalize() }}|{{ '-'.join(['a', 'b']) }}",
                "AB|ab|Abc|a-b")]
    [InlineData("{{ d.get('a') }}|{{ d.get('z') }}|{{ d.get('z', 5) }}|{{ d.keys()|list }}|{{ d.values()|list }}|{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
                "1|None|5|['a']|[1]|a=1;")]
    [InlineData("{{ d['items']()|length }}|{{ {'items': 5}.items is string }}|{{ {'items': 5}['items'] }}",
                "1|False|5")]
    // Expressions
    [InlineData("{{ none }}|{{ true }}|{{ [1, 'a', none, true, 1.5] }}|{{ {'a': 1, 'b': 'it\\'s'} }}|{{ ['q\"', '\\n', 'both\\'\"', '\\u0001\u00e9'] }}",
                "None|True|[1, 'a', None, True, 1.5]|{'a': 1, 'b': \"it's\"}|['q\"', '\\n', 'both\\'\"', '\\x01\u00e9']")]
    [InlineData("{{ 1/2 }}|{{ 7//2 }}|{{ -7//2 }}|{{ -7 % 3 }}|{{ 2**10 }}|{{ 2 ** -1 }}|{{ 7.0 // 2 }}|{{ -7.5 % 2 }}",
                "0.5|3|-4|2|1024|0.5|3.0|0.5")]
    [InlineData("{{ 1e20 }}|{{ 0.1 + 0.2 }}|{{ 1e15 }}|{{ 1e16 }}|{{ 1.5e-5 }}|{{ 0.0001 }}|{{ 100.0 }}|{{ -0.0 }}",
                "1e+20|0.30000000000000004|1000000000000000.0|1e+16|1.5e-05|0.0001|100.0|-0.0")]
    [InlineData("{{ 'a' ~ 1 ~ none }}|{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 10 - 2 - 3 }}|{{ 2 ** 3 ** 2 }}|{{ 'ab' * 2 }}|{{ [1] * 2 }}|{{ [1] + [2] }}|{{ - 2 ** 2 }}",
                "a1None|7|9|5|64|abab|[1, 1]|[1, 2]|4")]
    [InlineData("{{ not 1 }}|{{ 1 if false }}|{{ 'x' if true else 'y' }}|{{ 0 or 'z' }}|{{ 1 and 2 }}|{{ 1 < 2 < 3 }}|{{ 3 > 2 > 2 }}|{{ 'a' <= 'b' }}|{{ 2 >= 3 }}",
                "False||x|z|2|True|False|True|False")]
    [InlineData("{{ 'b' not in 'abc' }}|{{ 1 in [1, 2] }}|{{ 'k' in {'k': 1} }}|{{ 1 == 1.0 }}|{{ true == 1 }}|{{ none == none }}|{{ [1, [2]] == [1, [2]] }}|{{ 1 != 2 }}",
                "False|True|True|True|True|True|True|True")]
    [InlineData("{{ 'abc'[::-1] }}|{{ [1, 2, 3][-1] }}|{{ [1, 2, 3][1:] }}|{{ [1, 2, 3, 4, 5][::2] }}|{{ [1, 2, 3, 4, 5][-2:0:-1] }}|{{ 'h\u00e9llo\U0001d400'[1:4] }}|{{ 'h\u00e9llo\U0001d400'[-1] }}",
                "cba|3|[2, 3]|[1, 3, 5]|[4, 3, 2]|\u00e9ll|\U0001d400")]
    [InlineData("{{ m.missing }}|{{ m['missing'] }}|{{ 'abc'[5] }}|{{ 'abc'.missing }}|{{ m.a }}|{{ m['a'] }}|{{ n.x }}|{{ [1][3] }}",
                "||||1|1||")]
    [InlineData("{{ 'a' 'b' }}|{{ \"it's\" }}|{{ 'x\\ty' }}|{{ '\\u00e9\\x41\\101\\d' }}",
                "ab|it's|x\ty|\u00e9AA\\d")]
    [InlineData("{{ range(3)|list }}|{{ range(1, 7, 2)|list }}|{{ range(5, 0, -2)|list }}",
                "[0, 1, 2]|[1, 3, 5]|[5, 3, 1]")]
    // Statements
    [InlineData("{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = i * 10 %}{{ x }};{% endfor %}{{ x }}",
                "110;120;1")]
    [InlineData("{% for i in [1, 2] %}{% if i == 2 %}[{{ y }}]{% endif %}{% set y = i %}{% endfor %}[{{ y }}]",
                "[][]")]
    [InlineData("{% if true %}{% set z = 5 %}{% endif %}{{ z }}",
                "5")]
    [InlineData("{% set ns = namespace(a=1) %}{% for i in [1, 2] %}{% set ns.a = ns.a + i %}{% endfor %}{{ ns.a }}|{% set ns2 = namespace({'b': 2}, c=3) %}{{ ns2.b }}{{ ns2['c'] }}",
                "4|23")]
    [InlineData("{% for m in [1, 2, 3] %}{{ loop.index0 }}{{ loop.index }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.previtem }}{{ loop.nextitem }};{% endfor %}",
                "01TrueFalse3322;12FalseFalse32113;23FalseTrue3102;")]
    [InlineData("{% for x in [] %}a{% else %}empty{% endfor %}|{% for x in [1, 2, 3, 4] if x is odd %}{{ x }}{{ loop.last }}{% endfor %}|{% for c in 'ab' %}{{ c }}.{% endfor %}|{% for k in {'p': 1, 'q': 2} %}{{ k }}{% endfor %}",
                "empty|1False3True|a.b.|pq")]
    [InlineData("{% if a %}1{% elif b %}2{% elif c %}3{% else %}4{% endif %}{% if [] %}5{% elif {} %}6{% else %}7{% endif %}",
                "37")]
    // Whitespace
    [InlineData("a\n  {% if true %}\n  b\n  {% endif %}\nc\n",
                "a\n  b\nc")]
    [InlineData("a  {%- if true -%}  b  {%- endif -%}  c",
                "abc")]
    [InlineData("{# comment #}\nx\n   {# c2 #}\ny",
                "x\ny")]
    [InlineData("  {%+ if true %}\nx{% endif +%}\ny",
                "  x\ny")]
    [InlineData("{{ 'a' }}\n{{ 'b' }}\n  {{ 'c' -}}\n  d {{- 'e' }}",
                "a\nb\n  cde")]
    [InlineData("x {% if true %}y{% endif %} z\n {% for i in [1] %}\n{{ i }}\n{% endfor %}\n",
                "x y z\n1\n")]
    [InlineData("{%- if true %}\r\n  a\r\n{%- endif %}\r\n",
                "  a")]
    [InlineData("{#- c -#}   x   {#- c -#}|{{ '}}' }}|{{ {'a': {'b': 1}}['a']['b'] }}|{{ '%}' }}",
                "x|}}|1|%}")]
    [InlineData("{% if true %}\n   {% if true %}z{% endif %}{% endif %}|   {% if true %}a{% endif %}|x   {% if true %}a{% endif %}",
                "z|   a|x   a")]
    public void A_template_renders_as_jinja2_renders_it(string template, string expected) =>
        Assert.Equal(expected, ChatTemplate.Parse(template).Render([], variables: Context));

    /// <summary>The prompts of the tiny-idefics3 fixtures ("&lt;|im_start|&gt;User:&lt;image&gt;Describe.&lt;end_of_utterance&gt;\nAssistant: ...").</summary>
    [Fact]
    public void The_smolvlm_template_renders_image_and_text_parts()
    {
        ChatTemplate template = ChatTemplate.Parse(SmolVlm);
        ChatMessage describe = new("user", [ChatPart.Image, ChatPart.FromText("Describe.")]);

        Assert.Equal("<|im_start|>User:<image>Describe.<end_of_utterance>\nAssistant:", template.Render([describe], addGenerationPrompt: true));
        Assert.Equal("<|im_start|>User:<image>Describe.<end_of_utterance>\nAssistant: Red and blue.<end_of_utterance>\n",
            template.Render([describe, new ChatMessage("assistant", [ChatPart.FromText("Red and blue.")])]));
        Assert.Equal("<|im_start|>System: Be brief.<end_of_utterance>\nUser: What?<image><image><end_of_utterance>\nAssistant:",
            template.Render(
                [new ChatMessage("system", [ChatPart.FromText("Be brief.")]), new ChatMessage("user", [ChatPart.FromText("What?"), ChatPart.Image, ChatPart.Image])],
                addGenerationPrompt: true));
        // A string content is iterated character by character and indexed by 'type' (undefined): Jinja2 prints no text.
        Assert.Equal("<|im_start|>User: <end_of_utterance>\nAssistant:", template.Render([new ChatMessage("user", "plain string")], addGenerationPrompt: true));
    }

    public static TheoryData<string, int, string> Errors => new()
    {
        { "a\n{% macro f() %}x{% endmacro %}", 2, "the tag 'macro' is not supported" },
        { "{% set y %}a{% endset %}", 1, "a set block" },
        { "a\nb\n{{ x|wordwrap }}", 3, "the filter 'wordwrap' is not supported" },
        { "{% if x is callable %}{% endif %}", 1, "the test 'callable' is not supported" },
        { "\n{{ 'a'.format() }}", 2, "the str method 'format' is not supported" },
        { "\n\n{{ raise_exception('No system messages.') }}", 3, "raise_exception: No system messages." },
        { "{{ x.y }}", 1, "'x' is undefined" },
        { "{{ 'a' + 1 }}", 1, "unsupported operand type(s) for +: 'str' and 'int'" },
        { "{% for i in 1 %}{% endfor %}", 1, "'int' object is not iterable" },
        { "{% if true %}\nx", 2, "the if on line 1 is not closed with endif" },
        { "{% endfor %}", 1, "'endfor' without a matching opening tag" },
        { "{{ 'a'", 1, "the output tag is not closed with }}" },
        { "{{ [1, 2]|join(', ', 'x', 'y') }}", 1, "join() takes at most 2 argument(s)" },
    };

    [Theory]
    [MemberData(nameof(Errors))]
    public void A_construct_outside_the_subset_or_a_failure_names_the_template_line(string template, int line, string detail)
    {
        ChatTemplateException e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse(template, "test.jinja").Render([]));
        Assert.Equal(line, e.Line);
        Assert.Equal("test.jinja", e.TemplateName);
        Assert.Contains(detail, e.Detail);
        Assert.StartsWith($"chat template (test.jinja) line {line}: ", e.Message);
    }

    [Fact]
    public void Enable_thinking_and_other_variables_reach_the_template()
    {
        ChatTemplate template = ChatTemplate.Parse("{{ enable_thinking is false }}|{{ count + 1 }}|{{ items|length }}|{{ add_generation_prompt }}");
        var variables = new Dictionary<string, object?> { ["enable_thinking"] = false, ["count"] = 41, ["items"] = new[] { "a", "b" } };

        Assert.Equal("True|42|2|True", template.Render([], addGenerationPrompt: true, variables));
    }

    /// <summary>transformers prefers chat_template.jinja, then the processor's chat_template.json, then tokenizer_config.json.</summary>
    [Fact]
    public void A_model_folder_template_is_found_where_transformers_looks_first()
    {
        using var folder = new TempDirectory();
        File.WriteAllText(folder.Path("tokenizer_config.json"), """
            {"chat_template": [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "config {{ bos_token }}{{ eos_token }} {{ additional_special_tokens|length }}"}],
             "bos_token": {"__type": "AddedToken", "content": "<s>"}, "eos_token": "</s>", "pad_token": null,
             "additional_special_tokens": ["<a>", {"content": "<b>"}]}
            """);
        Assert.Equal(("tokenizer_config.json", "config <s></s> 2"), Rendered(folder.Root));

        File.WriteAllText(folder.Path("chat_template.json"), """{"chat_template": "processor {{ pad_token is defined }}"}""");
        Assert.Equal(("chat_template.json", "processor False"), Rendered(folder.Root));

        File.WriteAllText(folder.Path("chat_template.jinja"), "jinja {{ eos_token }}\n");
        Assert.Equal(("chat_template.jinja", "jinja </s>"), Rendered(folder.Root));
    }

    [Fact]
    public void A_folder_without_a_template_is_an_error_listing_where_it_looked()
    {
        using var folder = new TempDirectory();
        File.WriteAllText(folder.Path("tokenizer_config.json"), """{"eos_token": "</s>"}""");
        FileNotFoundException e = Assert.Throws<FileNotFoundException>(() => ChatTemplate.Load(folder.Root));
        Assert.Contains("chat_template.jinja, chat_template.json, tokenizer_config.json", e.Message);
    }

    private static (string Name, string Text) Rendered(string folder)
    {
        ChatTemplate template = ChatTemplate.Load(folder);
        return (template.Name, template.Render([]));
    }
}
